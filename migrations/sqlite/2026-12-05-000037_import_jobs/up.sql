-- CSV imports as background jobs: the upload is stored here and a worker (`serve` or
-- `iria-news worker`) imports it in chunks. Each chunk's subscribers and the job's counters are
-- written in one transaction, so a job whose process died resumes at its next unimported row.
-- `data` is the uploaded file, emptied once the job is done (the addresses are then in
-- `subscribers`); `errors` and `existing` keep the first 100 rows of each kind, one per line
-- ("line<TAB>why", "line<TAB>address<TAB>status").
CREATE TABLE import_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name TEXT NOT NULL,
    data BLOB NOT NULL,
    consent_held BOOLEAN NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed')),
    rows_total BIGINT NOT NULL,
    rows_done BIGINT NOT NULL DEFAULT 0,
    rows_imported BIGINT NOT NULL DEFAULT 0,
    rows_existing BIGINT NOT NULL DEFAULT 0,
    rows_rejected BIGINT NOT NULL DEFAULT 0,
    errors TEXT NOT NULL DEFAULT '',
    existing TEXT NOT NULL DEFAULT '',
    failure TEXT,
    created_by TEXT NOT NULL,
    created_ip TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    lease_owner TEXT,
    lease_until TIMESTAMP
);
CREATE INDEX import_jobs_open ON import_jobs (status, id);
