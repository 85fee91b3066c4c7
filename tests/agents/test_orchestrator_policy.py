import random

from agent_orchestrated_etl.agents.recovery import MAX_SPLIT_DEPTH, BackoffRecoveryPolicy
from agent_orchestrated_etl.agents.scheduler import AgentInfo, select_agent
from agent_orchestrated_etl.model.messages import TaskFailed
from agent_orchestrated_etl.spec import RetryPolicy


def agents() -> list[AgentInfo]:
    return [
        AgentInfo("etl-b", frozenset({"extract_load", "stage"}), capacity=2, in_flight=1),
        AgentInfo("etl-a", frozenset({"extract_load"}), capacity=4, in_flight=1),
        AgentInfo("etl-c", frozenset({"transform_load"}), capacity=1, in_flight=0),
    ]


def test_picks_the_least_loaded_agent_with_the_capability() -> None:
    assert select_agent(agents(), "extract_load").name == "etl-a"  # 1/4 beats 1/2
    assert select_agent(agents(), "stage").name == "etl-b"
    assert select_agent(agents(), "transform_load").name == "etl-c"


def test_ties_go_by_name_so_placement_is_reproducible() -> None:
    pool = [AgentInfo("etl-2", frozenset({"x"}), 2), AgentInfo("etl-1", frozenset({"x"}), 2)]
    assert select_agent(pool, "x").name == "etl-1"


def test_no_agent_when_full_or_incapable() -> None:
    pool = agents()
    pool[2].in_flight = 1
    assert select_agent(pool, "transform_load") is None
    assert select_agent(pool, "profile") is None


def failure(remedy: str, attempt: int) -> TaskFailed:
    return TaskFailed(run_id="r", task_id="t", attempt=attempt, error_type="E", remedy=remedy, message="m")


def test_transient_errors_are_retried_with_bounded_jittered_backoff() -> None:
    policy = BackoffRecoveryPolicy(random.Random(7))
    retry = RetryPolicy(attempts=4, backoff_seconds=1, max_backoff_seconds=3)
    delays = []
    for attempt in (1, 2, 3):
        recovery = policy.decide(failure("retry", attempt), retry)
        assert recovery.action == "retry"
        delays.append(recovery.delay)
    assert 0 <= delays[0] <= 1 and 0 <= delays[1] <= 2 and 0 <= delays[2] <= 3
    last = policy.decide(failure("retry", 4), retry)
    assert last.action == "fail"
    assert "4 attempts" in last.reason


def test_configuration_and_fatal_errors_fail_fast() -> None:
    policy = BackoffRecoveryPolicy(random.Random(1))
    for remedy in ("fix_config", "fail", "quarantine"):
        recovery = policy.decide(failure(remedy, 1), RetryPolicy(attempts=5))
        assert recovery.action == "fail"
        assert recovery.delay == 0


def test_bad_data_is_narrowed_down_by_splitting_then_set_aside_only_where_the_spec_allows() -> None:
    policy = BackoffRecoveryPolicy(random.Random(1))
    allowed = RetryPolicy(on_bad_data="quarantine")
    assert policy.decide(failure("quarantine", 1), allowed, split_depth=0).action == "split"
    assert policy.decide(failure("quarantine", 1), allowed, split_depth=MAX_SPLIT_DEPTH - 1).action == "split"
    assert policy.decide(failure("quarantine", 1), allowed, split_depth=MAX_SPLIT_DEPTH).action == "quarantine"
    assert (
        policy.decide(failure("quarantine", 1), allowed, split_depth=None).action == "quarantine"
    )  # a file cannot be split
    assert policy.decide(failure("quarantine", 1), RetryPolicy(), split_depth=0).action == "fail"  # the default: fail
    assert policy.decide(failure("fix_config", 1), allowed, split_depth=0).action == "fail"  # not a data problem


def test_a_timed_out_partition_is_split_and_an_unsplittable_one_retried() -> None:
    policy = BackoffRecoveryPolicy(random.Random(1))
    timeout = TaskFailed(run_id="r", task_id="t", attempt=1, error_type="TaskTimeout", remedy="retry", message="m")
    assert policy.decide(timeout, RetryPolicy(), split_depth=0).action == "split"
    assert policy.decide(timeout, RetryPolicy(), split_depth=None).action == "retry"
