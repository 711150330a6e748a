"""polyfactory factories for the contract's request bodies: realistic data for tests and the benchmark's seed."""

from __future__ import annotations

import uuid

from polyfactory import Use
from polyfactory.factories.msgspec_factory import MsgspecFactory

from domain.accounts.schemas import Registration
from domain.workflows.schemas import Parameters, WorkflowCreate


class RegistrationFactory(MsgspecFactory[Registration]):
    email = Use(lambda: f"user-{uuid.uuid4().hex[:12]}@example.com")
    password = Use(lambda: f"pw-{uuid.uuid4().hex}")
    name = Use(lambda: RegistrationFactory.__faker__.name())


class ParametersFactory(MsgspecFactory[Parameters]):
    discount_rate = Use(lambda: round(ParametersFactory.__random__.uniform(0.0, 0.2), 4))
    simulations = 0
    volatility = Use(lambda: round(ParametersFactory.__random__.uniform(0.0, 0.5), 3))
    seed = None


def _cash_flows(periods: int = 8) -> list[float]:
    random = WorkflowCreateFactory.__random__
    investment = -round(random.uniform(1_000, 100_000), 2)
    return [investment, *(round(random.uniform(0, -investment / 2), 2) for _ in range(periods - 1))]


class WorkflowCreateFactory(MsgspecFactory[WorkflowCreate]):
    name = Use(lambda: f"{WorkflowCreateFactory.__faker__.company()} expansion")
    description = Use(lambda: WorkflowCreateFactory.__faker__.sentence())
    parameters = Use(ParametersFactory.build)
    cash_flows = Use(_cash_flows)
    upload_id = None
    priority = "normal"
