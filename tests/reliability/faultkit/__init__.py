"""The fault-injection suite of issue 11: harness, fault shims and the nine scenarios.

Shared by the tests in ``tests/reliability`` (short tier by default, full figures behind
``slow``) and the seeded scripts in ``bench/stress`` (which put ``tests/reliability`` on
``sys.path``). Nothing here depends on pytest: every scenario is a function
``run(variant, *, seed, runs, workdir, ...) -> Figures`` that never raises for a broken
promise but records it in ``Figures.failures``, so that a script can count failures and a
test can assert there are none.

Modules:
    harness: workers in forked children, acknowledgement pipes, kill points, checkers,
        figures.
    shims: the fault shims (an apsw VFS, wrappers around os calls, a file size limit).
    ops: one operation on a seeded, OpenClaw-written state, and the views that tell its
        old state from its new one (shared by the sweep and the disk-full scenario).
    kill9, sweep, diskfull, ioerrors, mixed, forks, walgrowth, migkill, fuzz: one scenario
        each (numbered 1-9 in the issue).
    report: the scenarios in order, and ``docs/reliability.md`` rendered from their figures.

Where the shared code lives: here, beside the tests, because the tests are what CI runs
and checks (ruff covers ``tests``); the scripts are thin command lines over it.
"""
