"""The same logic as tool.py, as a kit agent: `summarize` and `echo`."""
import heavy
from skep_agent import Agent

agent = Agent()


@agent.method
def summarize(text: str) -> dict:
    return heavy.summarize(text)


@agent.method
def echo(*args, **kwargs):
    return kwargs or list(args)


agent.run()
