#!/usr/bin/env python3
"""bench/scale: doska past one instance, in one run on one machine. Runs the realtime half
(bench/scale/realtime.py: (a) deliveries/s with RLS subscribers split across two instances vs all
on one, (b) failover after SIGKILL of the slot holder) and, when present, the REST half
(bench/scale/rest.py: (c) REST GET through nginx to two instances vs straight to one), each with its
own table of PASS/FAIL, with its default settings.
Usage: bench/scale/run.py"""
import importlib.util, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    path = os.path.join(HERE, f'{name}.py')
    if not os.path.exists(path):
        return None
    spec = importlib.util.spec_from_file_location(f'bench_scale_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ok = True
    for name in ('realtime', 'rest'):
        module = load(name)
        if module is None:
            print(f'bench/scale/{name}.py is not there: skipped')
            continue
        print(f'== bench/scale/{name}.py')
        # Each half's main() returns whether all its targets passed, or exits with its status.
        sys.argv = [os.path.join(HERE, f'{name}.py')]
        try:
            passed = module.main() is not False
        except SystemExit as e:
            passed = e.code in (0, None)
        ok = passed and ok
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
