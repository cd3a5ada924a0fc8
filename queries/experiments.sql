-- One row per (project, experiment): how many runs, in which states, and when.
CREATE OR REPLACE VIEW experiments AS
SELECT
    project,
    experiment,
    count(*) AS runs,
    count(*) FILTER (WHERE status = 'running') AS running,
    count(*) FILTER (WHERE status = 'finished') AS finished,
    count(*) FILTER (WHERE status IN ('failed', 'killed', 'stalled')) AS failed,
    min(start_time) AS first_start,
    max(start_time) AS last_start
FROM runs
GROUP BY project, experiment;
