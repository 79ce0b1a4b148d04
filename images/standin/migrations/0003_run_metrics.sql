-- Schema 3: metrics a run reports.
CREATE TABLE run_metrics (
    run_id bigint REFERENCES runs(id),
    name text NOT NULL,
    value double precision NOT NULL
);
