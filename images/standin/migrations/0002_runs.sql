-- Schema 2: runs of an experiment, and who owns an experiment.
CREATE TABLE runs (
    id bigserial PRIMARY KEY,
    experiment_id bigint REFERENCES experiments(id),
    status text NOT NULL DEFAULT 'queued'
);
ALTER TABLE experiments ADD COLUMN owner text;
