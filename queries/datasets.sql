-- Data set fingerprints each run logged (name, source, content hash, shape, schema).
CREATE OR REPLACE VIEW datasets AS
SELECT run_id, project, name, context, source, sha256, rows, columns, schema, fingerprint, ts
FROM events_datasets;
