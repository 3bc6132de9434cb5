"""The benchmark grid: from a validated config to the list of jobs and each job's settings.

A job is one (dataset, flow, seed) triple; its objective follows from the config section that
lists it: ``mle`` (data sets x flows), ``vi`` (energy targets x flows) or ``distill``
(data sets x the distilled student ``iaf_student``, whose teacher is another job of the
``mle`` grid). A *flow* here is a named variant from the config's ``flows`` section: it names
its builder in ``flows_tf.FLOWS`` (``flow:``, default: the variant's own name) plus the
builder's hyperparameters, so that ``planar_k2`` and ``planar_k32`` can sit side by side.

:func:`check_config` refuses, before any job starts, every config the JSON schema admits but the
grid cannot run (unknown data set or hyperparameter, wrong kind of data set for an objective, a
missing data file, a student that cannot sample in one pass, ...), naming the key, the value and
what would be accepted.

Pure Python, no TensorFlow: the Snakefile imports it to enumerate targets and check the config.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows_tf.datasets.registry import DATASETS, resolve
from flows_tf.vocabulary import DATA_FILE_SUFFIXES, FLOW_HPARAMS, HPARAM_CHOICES, ONE_PASS_SAMPLERS

__all__ = [
    "OBJECTIVES",
    "STUDENT",
    "ConfigError",
    "Job",
    "check_config",
    "data_datasets",
    "dataset_kind",
    "flow_variant",
    "grouped_flows",
    "jobs",
    "make_job",
    "on_data",
    "stable_hash",
    "teacher_job",
]

STUDENT = "iaf_student"
OBJECTIVES = ("mle", "vi", "distill")
# the registry entries of flows_tf.train.OBJECTIVES per objective (a test keeps them equal)
METHODS = {"mle": ("mle",), "vi": ("vi",), "distill": ("distill", "distill_paired")}
DATA_KINDS = ("toy", "image", "uci", "file")
# the kinds of data set each objective trains on: samples (mle, distill) or an energy (vi)
SECTION_KINDS = {"mle": DATA_KINDS, "vi": ("energy",), "distill": DATA_KINDS}


def on_data(objective: str) -> bool:
    """Whether runs of section ``objective`` fit data splits and are scored by test
    log-likelihood (mle, distill), not an energy target scored by ``KL(q || p)`` (vi).

    >>> [on_data(o) for o in OBJECTIVES]
    [True, False, True]
    """
    return "energy" not in SECTION_KINDS[objective]


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
    method: str = ""  # the objective fit runs (flows_tf.train.OBJECTIVES); "": the objective

    def __post_init__(self) -> None:
        if not self.method:
            object.__setattr__(self, "method", self.objective)

    @property
    def on_data(self) -> bool:
        """Trained and evaluated on data splits (mle, distill), not on an energy target (vi)."""
        return on_data(self.objective)

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


def stable_hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flow_variant(config: dict, flow: str, dataset: str | None = None) -> tuple[str, dict]:
    """The builder name and hyperparameters of a flow variant named in the config; with
    ``dataset``, the variant's ``by_dataset`` entry for it replaces some of them."""
    options = dict(config.get("flows", {}).get(flow) or {})
    options.pop("training", None)
    by_dataset = options.pop("by_dataset", None) or {}
    builder = options.pop("flow", flow)
    if dataset is not None:
        options.update(by_dataset.get(dataset) or {})
        options.pop("training", None)
    return builder, options


def training_settings(config: dict, section: str, dataset: str, flow: str | None) -> dict:
    """A job's training settings: the section's ``training``, then its ``training_by_dataset``
    entry for the data set, then the flow variant's own ``training``, then the ``training`` of
    the variant's ``by_dataset`` entry for the data set (later ones win). ``flow=None`` (the
    distilled student) takes the section's alone: a variant's settings are for its own jobs."""
    part = config.get(section) or {}
    variant = ((config.get("flows") or {}).get(flow) or {}) if flow else {}
    variant_here = (variant.get("by_dataset") or {}).get(dataset) or {}
    return {
        **(part.get("training") or {}),
        **((part.get("training_by_dataset") or {}).get(dataset) or {}),
        **(variant.get("training") or {}),
        **(variant_here.get("training") or {}),
    }


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
        builder, hparams = flow_variant(config, section.get("student", "iaf"), dataset)
        return Job(
            dataset,
            flow,
            seed,
            "distill",
            builder,
            hparams,
            training_settings(config, "distill", dataset, None),
            dataset_options,
            teacher,
            section.get("method", "distill"),
        )
    objective = "vi" if dataset in (config.get("vi") or {}).get("datasets", []) else "mle"
    builder, hparams = flow_variant(config, flow, dataset)
    training = training_settings(config, objective, dataset, flow)
    return Job(dataset, flow, seed, objective, builder, hparams, training, dataset_options)


def teacher_job(config: dict, job: Job) -> Job:
    """The maximum-likelihood job whose trained flow the student distills."""
    return make_job(config, job.dataset, job.teacher, job.seed)


def grouped_flows(config: dict, objective: str) -> list[str]:
    """The flows of section ``objective`` (mle or vi) that train with others in one process,
    in config order, with ``train_jobs: grouped``: one job per mle data set for all its flows
    but the distillation teacher, which trains alone so that its students (alone too) start as
    soon as it is done, and one job for every energy target's vi flows. None with
    ``per_variant`` (the default: one job per data set and flow).

    >>> grouped_flows({"train_jobs": "grouped", "mle": {"flows": ["gaussian", "maf", "nsf"]},
    ...                "distill": {"teacher": "maf"}}, "mle")
    ['gaussian', 'nsf']
    """
    if config.get("train_jobs", "per_variant") != "grouped":
        return []
    teacher = config["distill"].get("teacher", "maf") if config.get("distill") else None
    flows = (config.get(objective) or {}).get("flows", [])
    return [f for f in flows if objective != "mle" or f != teacher]


def data_datasets(config: dict) -> list[str]:
    """Data sets that a preparation rule must write (energy targets need none)."""
    names = list((config.get("mle") or {}).get("datasets", []))
    names += [d for d in (config.get("distill") or {}).get("datasets", []) if d not in names]
    return names


# --------------------------------------------------------------------------------------------
# Config checks: what the JSON schema cannot express


class ConfigError(ValueError):
    """A config the grid cannot run; the message lists every problem, one per line."""


def check_config(config: dict, base_dir: str | Path | None = None) -> None:
    """Refuse a schema-valid config that would fail once its jobs run.

    Each problem names the key, the value and what is accepted (the closest known name for a
    typo); all are reported at once in one :class:`ConfigError`.

    Args:
        config: the config, already validated against ``workflow/schemas/config.schema.yaml``.
        base_dir: folder that relative data file paths start from (default: the working
            directory, as for the jobs).

    Example:
        >>> config = {"seeds": [0], "flows": {"maf": {}},
        ...           "mle": {"datasets": ["eight_gausians"], "flows": ["maf"]}}
        >>> check_config(config)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        flows_tf.experiment.ConfigError: invalid config:
          mle.datasets: unknown data set 'eight_gausians'; did you mean 'eight_gaussians'? ...
    """
    base_dir = Path.cwd() if base_dir is None else Path(base_dir)
    problems = [
        *_dataset_option_problems(config, base_dir),
        *_section_dataset_problems(config),
        *_flow_variant_problems(config),
        *_section_flow_problems(config),
        *_distill_problems(config),
    ]
    if not problems:
        keys = [j.key for j in jobs(config)]
        problems += [f"a (dataset, flow, seed) job appears twice: {k}" for k in _twice(keys)]
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def dataset_kind(config: dict, name: str) -> str | None:
    """The kind of data set ``name`` (``toy``, ``energy``, ``image``, ``uci``, ``file``), or
    None when neither the registry nor a ``path`` under ``datasets:`` defines it."""
    if name in DATASETS:
        return DATASETS[name].kind
    return "file" if "path" in _dataset_options(config, name) else None


def _dataset_options(config: dict, name: str) -> dict:
    return dict((config.get("datasets") or {}).get(name) or {})


def _twice(items: Iterable[str]) -> list:
    seen, out = set(), []
    for item in items:
        if item in seen and item not in out:
            out.append(item)
        seen.add(item)
    return out


def _closest(value: object, names: Iterable[object]) -> str:
    """``did you mean 'x'? `` for the closest of ``names``, or nothing."""
    match = difflib.get_close_matches(str(value), [str(n) for n in names], n=1)
    return f"did you mean {match[0]!r}? " if match else ""


def _unknown(key: str, what: str, value: object, names: Iterable[str]) -> str:
    names = sorted(names)
    return f"{key}: unknown {what} {value!r}; {_closest(value, names)}accepted: {', '.join(names)}"


def _dataset_names(config: dict, kinds: Collection[str]) -> list[str]:
    """Registry names and the config's file data sets of the given kinds."""
    names = [*DATASETS, *(config.get("datasets") or {})]
    return sorted({n for n in names if dataset_kind(config, n) in kinds})


def _dataset_option_problems(config: dict, base_dir: Path) -> list[str]:
    """Entries of ``datasets:``: a known name (or a file with ``path``) and its kind's options."""
    problems = []
    for name, options in (config.get("datasets") or {}).items():
        options = dict(options or {})
        key = f"datasets.{name}"
        kind = dataset_kind(config, name)
        if kind is None:
            problems.append(
                _unknown(key, "data set", name, DATASETS)
                + " (or give it a `path` to a .npy/.csv file)"
            )
            continue
        info = DATASETS[name] if kind != "file" else resolve(name, {"path": options["path"]})[0]
        for option in options:
            if option not in info.defaults:
                accepted = ", ".join(sorted(info.defaults)) or "none"
                problems.append(
                    f"{key}.{option}: a {kind} data set takes no option {option!r}; "
                    f"{_closest(option, info.defaults)}accepted: {accepted}"
                )
        if kind == "file":
            problems += _data_file_problems(f"{key}.path", options["path"], base_dir)
    return problems


def _data_file_problems(key: str, path: str, base_dir: Path) -> list[str]:
    """A user data file must exist and have a readable suffix."""
    full = Path(path) if Path(path).is_absolute() else base_dir / path
    suffixes = ", ".join(DATA_FILE_SUFFIXES)
    if full.suffix.lower() not in DATA_FILE_SUFFIXES:
        suffix = full.suffix or "(none)"
        return [f"{key}: {path!r} has suffix {suffix!r}; a data file must be one of {suffixes}"]
    if not full.is_file():
        return [f"{key}: {path!r} does not exist (looked for {full}); give an existing file"]
    return []


def _section_dataset_problems(config: dict) -> list[str]:
    """Every data set of mle, vi and distill is known and of the kind its objective needs."""
    problems = []
    for section, kinds in SECTION_KINDS.items():
        known = _dataset_names(config, kinds)
        for name in (config.get(section) or {}).get("datasets", []):
            kind = dataset_kind(config, name)
            key = f"{section}.datasets"
            if kind is None:
                problems.append(
                    _unknown(key, "data set", name, known)
                    + f" (or define datasets.{name}.path for a .npy/.csv file)"
                )
            elif kind not in kinds:
                problems.append(f"{key}: {name!r} is of kind {kind}; {_needs(section)}")
    return problems


def _needs(section: str) -> str:
    if section == "vi":
        targets = sorted(n for n, i in DATASETS.items() if i.kind == "energy")
        return f"vi needs an energy target: {', '.join(targets)}"
    return f"{section} needs data, a data set of kind {', '.join(DATA_KINDS)}"


def _flow_variant_problems(config: dict) -> list[str]:
    """Each variant of ``flows:`` names a builder and only hyperparameters that builder takes."""
    problems = []
    for variant, options in (config.get("flows") or {}).items():
        options = dict(options or {})
        key = f"flows.{variant}"
        if variant == STUDENT:
            problems.append(f"{key}: {STUDENT!r} is reserved for the distilled student")
            continue
        builder = options.pop("flow", variant)
        options.pop("training", None)  # the variant's own training settings (schema-checked)
        by_dataset = options.pop("by_dataset", None) or {}
        if builder not in FLOW_HPARAMS:
            where = f"{key}.flow" if "flow" in (config["flows"][variant] or {}) else key
            problems.append(
                _unknown(where, "flow builder", builder, FLOW_HPARAMS)
                + ("" if where.endswith(".flow") else " (or name one with `flow:`)")
            )
            continue
        for hparam, value in options.items():
            problems += _hparam_problems(f"{key}.{hparam}", builder, hparam, value)
        for dataset, entry in by_dataset.items():
            where = f"{key}.by_dataset.{dataset}"
            if dataset not in DATASETS and dataset not in (config.get("datasets") or {}):
                problems.append(_unknown(where, "data set", dataset, DATASETS))
            for hparam, value in (entry or {}).items():
                if hparam != "training":  # its training settings (schema-checked)
                    problems += _hparam_problems(f"{where}.{hparam}", builder, hparam, value)
    return problems


def _hparam_problems(key: str, builder: str, hparam: str, value: object) -> list[str]:
    accepted = FLOW_HPARAMS[builder]
    if hparam not in accepted:
        return [
            f"{key}: the {builder} builder takes no hyperparameter {hparam!r}; "
            f"{_closest(hparam, accepted)}accepted: {', '.join(accepted)}"
        ]
    choices = HPARAM_CHOICES.get(hparam)
    if choices and value not in choices:
        return [f"{key}: {value!r} is not accepted; {_closest(value, choices)}one of {choices}"]
    return []


def _section_flow_problems(config: dict) -> list[str]:
    """``mle.flows`` and ``vi.flows`` name variants defined under ``flows:``."""
    problems = []
    defined = sorted(config.get("flows") or {})
    for section in ("mle", "vi"):
        for flow in (config.get(section) or {}).get("flows", []):
            if flow == STUDENT:
                problems.append(
                    f"{section}.flows: {STUDENT!r} is the distilled student; the distill "
                    "section trains it"
                )
            elif flow not in defined:
                problems.append(
                    f"{section}.flows: unknown flow {flow!r}; {_closest(flow, defined)}"
                    f"defined in `flows`: {', '.join(defined)}"
                )
    return problems


def _distill_problems(config: dict) -> list[str]:
    """The teacher is trained by mle on each distilled data set; the student samples in one pass."""
    distill = config.get("distill") or {}
    if not distill.get("datasets"):
        return []
    mle = config.get("mle") or {}
    teacher, student = distill.get("teacher", "maf"), distill.get("student", "iaf")
    problems = []
    if teacher not in mle.get("flows", []):
        problems.append(
            f"distill.teacher: {teacher!r} is not one of mle.flows; "
            f"{_closest(teacher, mle.get('flows', []))}accepted: {', '.join(mle.get('flows', []))}"
        )
    variants = config.get("flows") or {}
    if student not in variants:
        problems.append(_unknown("distill.student", "flow", student, variants))
    else:
        builder, _ = flow_variant(config, student)
        if builder in FLOW_HPARAMS and builder not in ONE_PASS_SAMPLERS:
            problems.append(
                f"distill.student: {student!r} (builder {builder}) does not sample in one pass "
                "(its forward map is sequential); a student's builder must be one of "
                f"{', '.join(ONE_PASS_SAMPLERS)}"
            )
    method = distill.get("method", "distill")
    if method not in METHODS["distill"]:
        problems.append(
            f"distill.method: {method!r} is not a distillation objective; "
            f"{_closest(method, METHODS['distill'])}accepted: {', '.join(METHODS['distill'])}"
        )
    for dataset in distill["datasets"]:
        if dataset not in mle.get("datasets", []):
            problems.append(
                f"distill.datasets: {dataset!r} is not one of mle.datasets (the teacher is "
                f"trained there): {', '.join(mle.get('datasets', []))}"
            )
    return problems
