"""skep_agent: a warm skep agent in five lines (standard library only, Python >= 3.9).

    from skep_agent import Agent
    agent = Agent()

    @agent.method
    def review(path: str, strict: bool = False) -> dict: ...

    agent.run()

Layout: ``_agent.py`` the Agent and its serving loop, ``_params.py`` params
onto a signature, ``_wire.py`` the two framings, ``preload.py`` the warm
parent of ``protocol = "preload"`` roles (run as ``python -m skep_agent.preload``).
"""
from ._agent import PROGRESS_METHOD, Agent, Error

__all__ = ["Agent", "Error", "PROGRESS_METHOD"]
__version__ = "0.1.0"
