"""The kit's echo agent, to compare with the hand-written examples/agents/echo.py."""
from skep_agent import Agent

agent = Agent()


@agent.method
def echo(*args, **kwargs):
    return kwargs or list(args)


agent.run()
