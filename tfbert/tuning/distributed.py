"""A search spread over processes: KerasTuner's distributed-tuning variables from the flags, and the
chief serving the oracle to the workers."""

from __future__ import annotations

import os
import socket
import time

from tfbert.tuning.oracles import best_completed
from tfbert.tuning.reporting import write_results
from tfbert.tuning.settings import SearchError, TuneRunConfig, parse_address
from tfbert.tuning.tuner import BertTuner


def configure_distribution(config: TuneRunConfig) -> tuple[str | None, str | None, str | None]:
    """Sets KerasTuner's distributed-tuning variables for `--role` and `--oracle_address`:
    KERASTUNER_TUNER_ID (`chief` or `worker<index>`), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT.
    Without `--role`, variables already set in the environment (KerasTuner's own way) are used.

    Returns:
        (role, tuner id, oracle address), or (None, None, None) for a search in one process.
    """
    if not config.role:
        if "KERASTUNER_ORACLE_IP" not in os.environ:
            return None, None, None
        tuner_id = os.environ.get("KERASTUNER_TUNER_ID", "")
        if not tuner_id or "KERASTUNER_ORACLE_PORT" not in os.environ:
            raise SearchError("KERASTUNER_ORACLE_IP is set, so this is a distributed search, but "
                              "KERASTUNER_TUNER_ID or KERASTUNER_ORACLE_PORT is not; use --role and --oracle_address")
        address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        return ("chief" if "chief" in tuner_id else "worker"), tuner_id, address
    host, port = parse_address(config.oracle_address)
    if config.role == "chief":
        tuner_id = "chief"
    elif config.worker_index is not None:
        tuner_id = f"worker{config.worker_index}"
    else:
        tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    os.environ["KERASTUNER_TUNER_ID"] = tuner_id
    os.environ["KERASTUNER_ORACLE_IP"] = host
    os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
    return config.role, tuner_id, config.oracle_address


def serve_oracle(tuner: BertTuner, address: str) -> None:
    """The chief: serves the oracle to the workers (KerasTuner's gRPC protocol) until every worker
    has been told to stop and no trial is running; writes the results as trials end."""
    import grpc
    from concurrent import futures
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    host, port = parse_address(address)
    oracle = tuner.oracle
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise SearchError(f"--oracle_address {address}: cannot listen there (is the port in use, or the host "
                          f"not an address of this machine?)")
    server.start()
    print(f"chief: oracle listening on {address}; start the workers with --role worker "
          f"--oracle_address <this host>:{port} --worker_index 0, 1, ...", flush=True)
    tuner.progress.start()
    reported, workers = len(oracle.end_order), 1
    try:
        while True:
            time.sleep(0.5)
            workers = max(workers, len(oracle.tuner_ids))
            if len(oracle.end_order) > reported:
                for trial_id in oracle.end_order[reported:]:
                    trial = oracle.trials[trial_id]
                    seconds = trial.metrics.get_last_value("seconds") if trial.metrics.exists("seconds") else None
                    tuner.progress.trial_end(trial, best_completed(oracle), oracle, seconds=seconds or 0.0,
                                             parallel=workers)
                reported = len(oracle.end_order)
                write_results(oracle, tuner.hypermodel, tuner.project_dir, os.path.dirname(tuner.project_dir))
            if servicer.stop_triggered and oracle_chief.exit_chief(oracle):
                break
    finally:
        server.stop(grace=5)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` now (for tests and examples)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
