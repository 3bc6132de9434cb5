"""The benchmark grid: from a validated config to the list of jobs and each job's settings.

A job is one (dataset, flow, seed) triple; its objective follows from the config section that
lists it: ``mle`` (data sets x flows), ``vi`` (energy targets x flows) or ``distill``
(data sets x the distilled student ``iaf_student``, whose teacher is another job of the
``mle`` grid). A *flow* here is a named variant from the config's ``flows`` section: it names
its builder in ``flows_tf.FLOWS`` (``flow:``, default: the variant's own name) plus the
builder's hyperparameters, so that ``planar_k2`` and ``planar_k32`` can sit side by side.

Pure Python, no TensorFlow: the Snakefile imports it to enumerate targets.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field

STUDENT = "iaf_student"
OBJECTIVES = ("mle", "vi", "distill")


@dataclass(frozen=True)
class Job:
    """Everything one training job needs to know, derived from the config alone."""

    dataset: str
    flow: str
    seed: int
    objective: str
    builder: str
    hparams: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    dataset_options: dict = field(default_factory=dict)
    teacher: str | None = None  # flow variant of the teacher (distillation only)

    @property
    def key(self) -> str:
        """Deterministic identity of the job, used as the MLflow ``job_key`` tag."""
        return f"{self.dataset}/{self.flow}/seed{self.seed}/{self.objective}"

    @property
    def config_hash(self) -> str:
        """Hash of everything that defines the job's result (not threads or paths)."""
        return stable_hash(asdict(self))

    def to_dict(self) -> dict:
        return asdict(self)


def stable_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flow_variant(config: dict, flow: str) -> tuple[str, dict]:
    """The builder name and hyperparameters of a flow variant named in the config."""
    options = dict(config.get("flows", {}).get(flow) or {})
    builder = options.pop("flow", flow)
    return builder, options


def jobs(config: dict) -> list[Job]:
    """Every job of the grid, in a stable order."""
    out = []
    seeds = config.get("seeds", [0])
    for objective in ("mle", "vi"):
        section = config.get(objective) or {}
        for dataset in section.get("datasets", []):
            for flow in section.get("flows", []):
                for seed in seeds:
                    out.append(make_job(config, dataset, flow, seed))
    for dataset in (config.get("distill") or {}).get("datasets", []):
        for seed in seeds:
            out.append(make_job(config, dataset, STUDENT, seed))
    return out


def make_job(config: dict, dataset: str, flow: str, seed: int) -> Job:
    """The job for one (dataset, flow, seed), with its objective and merged settings."""
    seed = int(seed)
    dataset_options = dict((config.get("datasets") or {}).get(dataset) or {})
    if flow == STUDENT:
        section = config["distill"]
        teacher = section.get("teacher", "maf")
        builder, hparams = flow_variant(config, section.get("student", "iaf"))
        return Job(
            dataset,
            flow,
            seed,
            "distill",
            builder,
            hparams,
            dict(section.get("training") or {}),
            dataset_options,
            teacher,
        )
    objective = "vi" if dataset in (config.get("vi") or {}).get("datasets", []) else "mle"
    builder, hparams = flow_variant(config, flow)
    training = dict((config.get(objective) or {}).get("training") or {})
    return Job(dataset, flow, seed, objective, builder, hparams, training, dataset_options)


def teacher_job(config: dict, job: Job) -> Job:
    """The maximum-likelihood job whose trained flow the student distills."""
    return make_job(config, job.dataset, job.teacher, job.seed)


def data_datasets(config: dict) -> list[str]:
    """Data sets that a preparation rule must write (energy targets need none)."""
    names = list((config.get("mle") or {}).get("datasets", []))
    names += [d for d in (config.get("distill") or {}).get("datasets", []) if d not in names]
    return names
