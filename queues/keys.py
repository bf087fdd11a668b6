"""Every Redis key trainyard writes, in one place. RQ's own keys keep RQ's names."""

from __future__ import annotations

PREFIX = "ty:"

EVENTS = PREFIX + "events"  # stream of every status change
QUEUES = PREFIX + "queues"  # hash: queue name -> JSON metadata
NAMES = PREFIX + "idx:name"  # hash: "<project>\x1f<name>" -> newest task id
ALL = PREFIX + "idx:all"  # zset of every task id, scored by creation time
NAME_LEX = PREFIX + "idx:name-lex"  # zset, scores 0: "<name>\x00<id>" of every task (lex ranges, ZSCAN MATCH)
NAME_REV = PREFIX + "idx:name-rev"  # zset, scores 0: "<name reversed>\x00<id>" (a glob's literal suffix)

RQ_QUEUES = "rq:queues"

WEB_TOKENS = PREFIX + "web:tokens"  # hash: sha256 of an API token -> JSON {id, user, role, created}
WEB_BOOTSTRAP = PREFIX + "web:bootstrap"  # lock while the first admin token is made


def web_session(digest: str) -> str:
    """A browser login: the sha256 of the session cookie -> JSON {user, role, token} (expires)."""
    return f"{PREFIX}web:session:{digest}"


def task(task_id: str) -> str:
    return f"{PREFIX}task:{task_id}"


def log(task_id: str) -> str:
    return f"{PREFIX}log:{task_id}"


def status_index(status: str) -> str:
    return f"{PREFIX}idx:status:{status}"


def project_index(project: str) -> str:
    return f"{PREFIX}idx:project:{project}"


def tag_index(tag: str) -> str:
    return f"{PREFIX}idx:tag:{tag}"


def queue_index(queue: str) -> str:
    return f"{PREFIX}idx:queue:{queue}"


def name_field(project: str, name: str) -> str:
    return f"{project}\x1f{name}"


def name_member(name: str, task_id: str) -> str:
    """A task's member of NAME_LEX: its name, NUL, its id."""
    return f"{name}\x00{task_id}"


def name_member_reversed(name: str, task_id: str) -> str:
    """A task's member of NAME_REV: its name reversed, NUL, its id."""
    return f"{name[::-1]}\x00{task_id}"


def rq_queue(queue: str) -> str:
    return f"rq:queue:{queue}"


def rq_job(task_id: str) -> str:
    return f"rq:job:{task_id}"


def priorities(queue: str) -> str:
    """Hash: task id -> priority, only for tasks queued with a non-zero priority."""
    return f"{PREFIX}prio:{queue}"


CLAIMS = PREFIX + "claims"  # hash: task id -> JSON {worker, queue, host, pgid, ts} while a worker holds it
CLAIMS_REFRESHED = PREFIX + "claims:refreshed"  # zset: the claims' task ids by last write or refresh (reaper)
WORKERS = PREFIX + "workers"  # set of registered worker names
DRAINING = PREFIX + "draining"  # set of worker names told to drain: their claims refuse new work
REAPER_LOCK = PREFIX + "reaper:lock"
REAPER_LEASE = PREFIX + "reaper:lease"  # whose turn it is to reap, for one period (workers' passes)
ADOPT_LEASE = PREFIX + "reaper:adopt"  # whose turn it is to give unclaimed running tasks a claim
REPLICATION_MARK = PREFIX + "replication:mark"  # counter: written before WAIT, so WAIT covers every earlier write


def worker(name: str) -> str:
    """Hash of a live worker's facts; expires when its heartbeats stop."""
    return f"{PREFIX}worker:{name}"


def metrics(task_id: str) -> str:
    return f"{PREFIX}metrics:{task_id}"


def gpu_lease(host: str, index: int) -> str:
    """Which worker holds GPU ``index`` of ``host`` (expires unless refreshed)."""
    return f"{PREFIX}gpu:{host}:{index}"


PIPELINES = PREFIX + "idx:pipelines"  # zset of pipeline run ids by creation time


def pipeline(run_id: str) -> str:
    """A pipeline run's DAG and step states (JSON)."""
    return f"{PREFIX}pipe:{run_id}"


def step_cache(key: str) -> str:
    """Cache entry: a completed task that a step with the same inputs can reuse."""
    return f"{PREFIX}cache:{key}"


def inflight(queue: str) -> str:
    """Zset of a queue's tasks that are claimed or running (for its concurrency limit)."""
    return f"{PREFIX}inflight:{queue}"


def gpu_holds(host: str, index: int) -> str:
    """Hash: task id -> "worker|memory MB|expires" for each task holding GPU ``index`` of ``host``."""
    return f"{PREFIX}gpuhold:{host}:{index}"


# -- pipeline files, schedules and triggers (controller/files, controller/schedules, controller/triggers)
PIPEFILES = PREFIX + "pipefiles"  # hash: "project/name" -> registered pipeline file (JSON)
SCHEDULES = PREFIX + "schedules"  # hash: schedule id -> Schedule JSON
TASK_TRIGGERS = PREFIX + "tasktriggers"  # hash: trigger id -> TaskTrigger JSON (task triggers added by hand)
TRIGGER_FIRES = PREFIX + "trigger:fires"  # stream: one entry per firing
TRIGGER_LAST = PREFIX + "trigger:last"  # hash: trigger id -> its last firing (JSON)


def trigger_claim(trigger_id: str, occurrence: str) -> str:
    """SET NX by the trigger service that fires this (trigger, tick or event): nothing fires twice."""
    return f"{PREFIX}trigger:claim:{trigger_id}:{occurrence}"


# -- services: alerts (controller/alerts) and the autoscaler (controller/autoscale)
FLEET = PREFIX + "fleet"  # hash: worker name -> JSON {host, started, queues}, register to clean exit (lost: entry gone)
ALERT_RULES = PREFIX + "alert:rules"  # hash: rule id -> AlertRule JSON
ALERT_RULES_VERSION = PREFIX + "alert:rules:version"  # counter: moves with every rule change
ALERT_OUTBOX = PREFIX + "alert:outbox"  # stream of messages to send (group "senders": each sent once)
ALERT_HISTORY = PREFIX + "alert:history"  # stream: what was sent (or failed), newest last
ALERT_DUE = PREFIX + "alert:due"  # zset: rule id -> when its held alerts go out as one digest
ALERTS_GROUP = "alerts"  # consumer group of the alert services on EVENTS and ALERT_OUTBOX


SERVICES = PREFIX + "services"  # set of "<kind>:<name>" of running services


def service(kind: str, name: str) -> str:
    """A running service's facts (alerts, autoscaler), expiring when its heartbeats stop."""
    return f"{PREFIX}service:{kind}:{name}"


def alert_seen(rule_id: str, subject: str, transition: str) -> str:
    """SET NX when (rule, subject, transition) is raised: nothing is alerted twice."""
    return f"{PREFIX}alert:seen:{rule_id}:{subject}:{transition}"


def alert_rate(rule_id: str, window: int) -> str:
    """Messages of a rule in one rate window (a counter that expires)."""
    return f"{PREFIX}alert:rate:{rule_id}:{window}"


def alert_held(rule_id: str) -> str:
    """List of a rule's alerts over its rate, waiting for the digest."""
    return f"{PREFIX}alert:held:{rule_id}"


# -- hyper-parameter optimisation studies (controller/hpo, queues/studies.py)
STUDIES = PREFIX + "idx:studies"  # zset of study ids (= their controller task ids) by creation time


def study(study_id: str) -> str:
    """A study's definition and state (JSON): space, objective, strategy, limits, status."""
    return f"{PREFIX}study:{study_id}"


def study_trials(study_id: str) -> str:
    """Hash: trial number -> JSON {task, state, params, value, ...} (the controller's book of trials)."""
    return f"{PREFIX}study:{study_id}:trials"


def study_journal(study_id: str) -> str:
    """List: the Optuna study as its journal of operations, one JSON entry each (never pickle)."""
    return f"{PREFIX}study:{study_id}:journal"


def study_stop(study_id: str) -> str:
    """Set when someone asked the study to stop."""
    return f"{PREFIX}study:{study_id}:stop"


SCALE_CONFIG = PREFIX + "scale:config"  # string: the autoscaler's ScalerConfig JSON
SCALE_INSTANCES = PREFIX + "scale:instances"  # hash: instance id -> Instance JSON (what it started)
SCALE_DECISIONS = PREFIX + "scale:decisions"  # stream: each scale-up/-down decision with its reason
SCALE_LEADER = PREFIX + "scale:leader"  # the acting autoscaler's name (a lease)


def bell(queue: str) -> str:
    """List of wake tokens for ``queue``: at most one per waiting task; an idle worker serving the
    queue blocks on it (BLPOP) and Redis hands each token to exactly one of them."""
    return f"{PREFIX}bell:{queue}"


def inbox(worker: str) -> str:
    """List of messages for one worker (abort/drain/stop, "a GPU or slot may be free"): its own
    key, so that control reaches one worker without a broadcast."""
    return f"{PREFIX}inbox:{worker}"


def gpu_waiters(host: str) -> str:
    """Set of the workers on ``host`` waiting for a GPU: a release there wakes them, and only them."""
    return f"{PREFIX}gpuwait:{host}"
