-- Current tags of each run: the latest value per key; a deleted tag (NULL) disappears.
CREATE OR REPLACE VIEW tags AS
SELECT run_id, project, key, value, ts
FROM (
    SELECT
        run_id,
        any_value(project) AS project,
        key,
        arg_max_null(value, ts) AS value,
        max(ts) AS ts
    FROM events_tags
    GROUP BY run_id, key
)
WHERE value IS NOT NULL;
