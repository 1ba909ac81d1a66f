"""Simulated IB Gateway speaking the real TWS API socket protocol over 127.0.0.1.

Start it from the command line (``python -m tools.gateway_sim --scenario FILE --port 0``),
in-process (``await start_server(scenario)``) or in a background thread (``ThreadedSim``).
"""

from tools.gateway_sim.scenario import Scenario, ScenarioError, load_scenario, scenario_from_dict
from tools.gateway_sim.server import SimServer, start_server
from tools.gateway_sim.threaded import ThreadedSim

__all__ = [
    "Scenario",
    "ScenarioError",
    "SimServer",
    "ThreadedSim",
    "load_scenario",
    "scenario_from_dict",
    "start_server",
]
