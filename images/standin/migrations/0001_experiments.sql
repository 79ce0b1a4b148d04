-- Schema 1: experiments.
CREATE TABLE experiments (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
