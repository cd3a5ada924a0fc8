-- Files stored with each run; logging the same path again replaces the earlier entry.
-- uri is relative to the store root (artifacts/sha256/..) or an external URI.
CREATE OR REPLACE VIEW artifacts AS
SELECT run_id, project, path, size, sha256, uri, kind, ts
FROM events_artifacts
QUALIFY row_number() OVER (PARTITION BY run_id, path ORDER BY ts DESC) = 1;
