-- One row per run, folded from its lifecycle events (DESIGN.md invariant 7).
-- A run is ended when its latest finished/failed/killed event is not older than its
-- latest start or resume; an open run whose heartbeats stopped for longer than
-- getvariable('stall_after_s') shows as 'stalled'. "Now" is getvariable('as_of') when a
-- connection looks at the store as of a past moment (connect(as_of=...)).
-- A run whose latest deleted/restored event is 'deleted' (soft-deleted: an imported
-- deleted MLflow run, the shim's delete_run) is hidden unless the connection was opened
-- with include_deleted (getvariable('include_deleted')); then it shows with deleted =
-- true. Purged runs keep only their 'deleted' event, so they never show.
CREATE OR REPLACE VIEW runs AS
WITH folded AS (
    SELECT
        run_id,
        any_value(project) AS project,
        arg_min(experiment, ts) FILTER (WHERE event = 'started') AS experiment,
        arg_max(name, ts) FILTER (WHERE event IN ('started', 'renamed')) AS name,
        arg_min(parent_run_id, ts) FILTER (WHERE event = 'started') AS parent_run_id,
        arg_min("user", ts) FILTER (WHERE event = 'started') AS "user",
        arg_min(host, ts) FILTER (WHERE event = 'started') AS host,
        min(ts) FILTER (WHERE event = 'started') AS start_time,
        max(ts) FILTER (WHERE event IN ('started', 'resumed')) AS last_open,
        max(ts) FILTER (WHERE event IN ('started', 'resumed', 'attached', 'heartbeat')) AS last_heartbeat,
        max(ts) FILTER (WHERE event IN ('finished', 'failed', 'killed')) AS last_end,
        arg_max(event, ts) FILTER (WHERE event IN ('finished', 'failed', 'killed')) AS end_event,
        arg_max_null(message, ts) FILTER (WHERE event IN ('finished', 'failed', 'killed')) AS message,
        arg_max_null(exit_code, ts) FILTER (WHERE event IN ('finished', 'failed', 'killed')) AS exit_code,
        arg_max(attrs, ts) FILTER (WHERE event = 'environment') AS environment,
        arg_max(git_commit, ts) FILTER (WHERE event = 'environment') AS git_commit,
        arg_max(git_branch, ts) FILTER (WHERE event = 'environment') AS git_branch,
        arg_max(git_dirty, ts) FILTER (WHERE event = 'environment') AS git_dirty,
        arg_max(command, ts) FILTER (WHERE event = 'environment') AS env_command,
        arg_max(python_version, ts) FILTER (WHERE event = 'environment') AS python_version,
        arg_max(attrs, ts) FILTER (WHERE event = 'seeded') AS seeds,
        arg_min(attrs, ts) FILTER (WHERE event = 'started') AS start_attrs,
        coalesce(arg_max(event, ts) FILTER (WHERE event IN ('pinned', 'unpinned')) = 'pinned', false) AS pinned,
        count(*) FILTER (WHERE event = 'note') AS notes,
        coalesce(arg_max(event, ts) FILTER (WHERE event IN ('deleted', 'restored')) = 'deleted', false) AS deleted,
        max(ts) FILTER (WHERE event = 'deleted') AS last_deleted
    FROM events_runs
    GROUP BY run_id
),
classified AS (
    SELECT
        *,
        last_end IS NOT NULL AND last_end >= last_open AS ended,
        last_heartbeat < coalesce(CAST(getvariable('as_of') AS TIMESTAMPTZ), now())
            - to_seconds(getvariable('stall_after_s')) AS silent
    FROM folded
)
SELECT
    run_id,
    project,
    experiment,
    name,
    parent_run_id,
    CASE WHEN ended THEN end_event WHEN silent THEN 'stalled' ELSE 'running' END AS status,
    start_time,
    CASE WHEN ended THEN last_end END AS end_time,
    epoch(
        coalesce(
            CASE WHEN ended THEN last_end WHEN silent THEN last_heartbeat END,
            CAST(getvariable('as_of') AS TIMESTAMPTZ),
            now()
        ) - start_time
    ) AS duration_s,
    "user",
    host,
    git_commit,
    git_branch,
    git_dirty,
    coalesce(json_extract_string(start_attrs, '$.command'), env_command) AS command,
    python_version,
    json_extract_string(start_attrs, '$.description') AS description,
    message,
    exit_code,
    last_heartbeat,
    pinned,
    notes,
    seeds,
    environment,
    deleted,
    CASE WHEN deleted THEN last_deleted END AS deleted_time
FROM classified
WHERE start_time IS NOT NULL
  AND (NOT deleted OR coalesce(getvariable('include_deleted'), false));
