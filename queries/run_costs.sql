-- What each run cost, in money, energy and carbon, and where every figure came from.
--   compute_usd = wall hours x instance $/hour               (instance type known)
--               = GPU-hours x GPU $/hour + core-hours x core $/hour   (otherwise)
--   energy_usd  = energy kWh x electricity $/kWh        (only when [costs] power_paid)
--   cost_usd    = sum of explicit 'bill' cost events if any, else compute + energy
-- A price that cannot be found leaves cost_usd NULL (unknown), never 0.
-- Nested runs share their machine: a parent's billed hours exclude the time its children
-- ran (they are billed themselves), so a sweep is not paid twice.
-- Instance type and region: the run's tags (instance_type, region) win over what the
-- sampler recorded from LEDGER_INSTANCE_TYPE / LEDGER_REGION / [costs] at run start.
--
-- Built to stay fast at a million runs (docs/design.md, "Costs at scale"): a run written
-- by one process is folded in one aggregation (per_run -> single), not three; each JSON
-- attrs document is parsed once (from_json into a struct, after arg_max has kept one
-- document per group where it can), the runs fold is read once (MATERIALIZED, then
-- used for the run rows and for the child-time rollup), and prices are joined from
-- small lookup tables (the GPU-name regex runs once per distinct model, not per run).
CREATE OR REPLACE VIEW run_costs AS
-- Several processes may follow one run (`ledger run` around a Python script, workers
-- continuing LEDGER_RUN_ID): hardware adds up across hosts, not across processes of one
-- host; energy is metered per machine, so per host the largest figure counts (two
-- processes metering the same machine must not count it twice), summed over hosts.
WITH per_run AS (
    -- One pass over the cost events, per run: almost every run is written by one process,
    -- and then this is its whole fold (`single`); a run with several processes (or an
    -- event without a writer) is folded again per process and per host below (`multi`).
    -- Whether a run has one writer is told by the 64-bit hashes of its writer ids (min =
    -- max): a min/max over the 32-character ids themselves cost 0.35 CPU-s more on a
    -- million runs. Two processes of one run whose ids hash alike (odds about 1 in 2^64)
    -- would be folded as one.
    SELECT
        run_id,
        min(hash(writer_id)) AS writer_min,
        max(hash(writer_id)) AS writer_max,
        count(*) = count(writer_id) AS writers_known,
        max(ts) FILTER (WHERE kind = 'resources') AS r_ts,
        arg_max(attrs, ts) FILTER (WHERE kind = 'resources') AS r_attrs,
        count(*) FILTER (WHERE kind = 'energy') > 0 AS has_energy,
        arg_max(attrs, ts) FILTER (WHERE kind = 'energy') AS e_attrs,
        arg_max(source, ts) FILTER (WHERE kind = 'energy') AS source,
        arg_max(energy_kwh, ts) FILTER (WHERE kind = 'energy') AS energy_kwh,
        arg_max(cpu_energy_kwh, ts) FILTER (WHERE kind = 'energy') AS cpu_energy_kwh,
        arg_max(gpu_energy_kwh, ts) FILTER (WHERE kind = 'energy') AS gpu_energy_kwh,
        arg_max(ram_energy_kwh, ts) FILTER (WHERE kind = 'energy') AS ram_energy_kwh,
        arg_max(emissions_kg, ts) FILTER (WHERE kind = 'energy') AS emissions_kg,
        arg_max(measured, ts) FILTER (WHERE kind = 'energy') AS measured,
        sum(cost_usd) FILTER (WHERE kind = 'bill') AS bill_usd,
        list(source) FILTER (WHERE kind = 'bill') AS bill_sources
    FROM events_costs
    WHERE kind IN ('resources', 'energy', 'bill')
    GROUP BY run_id
),
single AS (
    -- A run of one process: what the per-writer, per-host and per-run folds below give
    -- for it, read straight off its one row (one machine, so nothing adds up).
    SELECT
        run_id,
        CASE WHEN r_ts IS NOT NULL THEN a.cpu_cores END AS cpu_cores,
        CASE WHEN r_ts IS NOT NULL THEN a.gpu_count END AS gpu_count,
        a.gpu_model, a.instance_type, a.instance_source, a.region,
        r_ts IS NOT NULL AS sampled,
        CASE WHEN has_energy THEN nullif(source, '') END AS energy_source,
        energy_kwh, cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh,
        emissions_kg AS recorded_emissions_kg,
        measured AS energy_measured,
        bill_usd,
        array_to_string(list_sort(list_distinct(bill_sources)), ', ') AS bill_source,
        from_json(e_attrs, '{"covered_s": "DOUBLE"}').covered_s AS energy_covered_s
    FROM (
        SELECT *,
            from_json(r_attrs, '{"host": "VARCHAR", "cpu_cores": "DOUBLE", "gpu_count": "DOUBLE",
                                 "gpu_model": "VARCHAR", "instance_type": "VARCHAR",
                                 "instance_source": "VARCHAR", "region": "VARCHAR"}') AS a
        FROM per_run WHERE writer_min = writer_max AND writers_known
    )
),
writers AS (
    -- Runs of several processes only: per run and writer (a process), its latest
    -- resources document, its latest energy figures (cumulative), its bills.
    SELECT
        run_id,
        writer_id,
        max(ts) FILTER (WHERE kind = 'resources') AS r_ts,
        arg_max(attrs, ts) FILTER (WHERE kind = 'resources') AS r_attrs,
        count(*) FILTER (WHERE kind = 'energy') > 0 AS has_energy,
        arg_max(attrs, ts) FILTER (WHERE kind = 'energy') AS e_attrs,
        arg_max(source, ts) FILTER (WHERE kind = 'energy') AS source,
        arg_max(energy_kwh, ts) FILTER (WHERE kind = 'energy') AS energy_kwh,
        arg_max(cpu_energy_kwh, ts) FILTER (WHERE kind = 'energy') AS cpu_energy_kwh,
        arg_max(gpu_energy_kwh, ts) FILTER (WHERE kind = 'energy') AS gpu_energy_kwh,
        arg_max(ram_energy_kwh, ts) FILTER (WHERE kind = 'energy') AS ram_energy_kwh,
        arg_max(emissions_kg, ts) FILTER (WHERE kind = 'energy') AS emissions_kg,
        arg_max(measured, ts) FILTER (WHERE kind = 'energy') AS measured,
        sum(cost_usd) FILTER (WHERE kind = 'bill') AS bill_usd,
        list(source) FILTER (WHERE kind = 'bill') AS bill_sources
    FROM events_costs
    WHERE kind IN ('resources', 'energy', 'bill')
      AND run_id IN (SELECT run_id FROM per_run
                     WHERE NOT coalesce(writer_min = writer_max AND writers_known, false))
    GROUP BY run_id, writer_id
),
parsed AS (
    -- Each kept JSON document is parsed once.
    SELECT
        *,
        from_json(r_attrs, '{"host": "VARCHAR", "cpu_cores": "DOUBLE", "gpu_count": "DOUBLE",
                             "gpu_model": "VARCHAR", "instance_type": "VARCHAR",
                             "instance_source": "VARCHAR", "region": "VARCHAR"}') AS a,
        from_json(e_attrs, '{"host": "VARCHAR", "covered_s": "DOUBLE"}') AS j
    FROM writers
),
hosts AS (
    -- Per machine: the hardware of its latest resources event, and the energy of the
    -- process that metered the most on it.
    SELECT
        run_id,
        count(r_ts) > 0 AS has_resources,
        arg_max_null(a.cpu_cores, r_ts) AS cpu_cores,
        arg_max_null(a.gpu_count, r_ts) AS gpu_count,
        arg_max_null(a.gpu_model, r_ts) AS gpu_model,
        arg_max_null(a.instance_type, r_ts) AS instance_type,
        arg_max_null(a.instance_source, r_ts) AS instance_source,
        arg_max_null(a.region, r_ts) AS region,
        bool_or(has_energy) AS has_energy,
        arg_max_null(source, e_rank) AS source,
        arg_max_null(energy_kwh, e_rank) AS energy_kwh,
        arg_max_null(cpu_energy_kwh, e_rank) AS cpu_energy_kwh,
        arg_max_null(gpu_energy_kwh, e_rank) AS gpu_energy_kwh,
        arg_max_null(ram_energy_kwh, e_rank) AS ram_energy_kwh,
        arg_max_null(emissions_kg, e_rank) AS emissions_kg,
        arg_max_null(measured, e_rank) AS measured,
        arg_max_null(j.covered_s, e_rank) AS covered_s,
        sum(bill_usd) AS bill_usd,
        flatten(list(bill_sources)) AS bill_sources
    FROM (
        SELECT
            *,
            -- a number, not a (kwh, writer) struct: struct keys made this step 3x slower
            CASE WHEN has_energy THEN coalesce(energy_kwh, -1.0) END AS e_rank
        FROM parsed
    )
    -- The host of a process is the one its resources event names (every sampling
    -- process writes one per run); a process without one counts as a machine of its own.
    -- Not the energy document's host: then a report that does not show energy coverage
    -- never has to keep and parse the energy documents at all.
    GROUP BY run_id, coalesce(a.host, 'writer:' || writer_id)
),
multi AS (
    -- Runs of several processes: per run, adding up their machines.
    SELECT
        run_id,
        -- hardware adds up across machines
        CASE WHEN bool_or(has_resources) THEN sum(cpu_cores) FILTER (WHERE has_resources) END
            AS cpu_cores,
        CASE WHEN count(*) FILTER (WHERE has_resources) = count(gpu_count) FILTER (WHERE has_resources)
             THEN sum(gpu_count) FILTER (WHERE has_resources) END AS gpu_count,
        max(gpu_model) AS gpu_model,
        max(instance_type) AS instance_type,
        max(instance_source) AS instance_source,
        max(region) AS region,
        bool_or(has_resources) AS sampled,
        -- and so does energy, one figure per machine
        -- list_distinct, not string_agg(DISTINCT): a DISTINCT aggregate costs a second
        -- hash aggregation and a join over a million runs
        nullif(array_to_string(list_sort(list_distinct(list(source) FILTER (WHERE has_energy))), '+'), '')
            AS energy_source,
        sum(energy_kwh) FILTER (WHERE has_energy) AS energy_kwh,
        sum(cpu_energy_kwh) FILTER (WHERE has_energy) AS cpu_energy_kwh,
        sum(gpu_energy_kwh) FILTER (WHERE has_energy) AS gpu_energy_kwh,
        sum(ram_energy_kwh) FILTER (WHERE has_energy) AS ram_energy_kwh,
        sum(emissions_kg) FILTER (WHERE has_energy) AS recorded_emissions_kg,
        bool_and(measured) FILTER (WHERE has_energy) AS energy_measured,
        max(covered_s) FILTER (WHERE has_energy) AS energy_covered_s,
        sum(bill_usd) AS bill_usd,
        array_to_string(list_sort(list_distinct(flatten(list(bill_sources)))), ', ') AS bill_source
    FROM hosts
    GROUP BY run_id
),
costed AS (SELECT * FROM single UNION ALL BY NAME SELECT * FROM multi),
folded AS MATERIALIZED (
    SELECT run_id, project, experiment, name, status, "user", start_time, end_time,
           duration_s, parent_run_id
    FROM runs
),
children AS (
    SELECT parent_run_id AS run_id, sum(duration_s) AS child_s
    FROM folded WHERE parent_run_id IS NOT NULL
    GROUP BY parent_run_id
),
placement_tags AS (
    SELECT
        run_id,
        any_value(value) FILTER (WHERE key = 'instance_type') AS instance_type,
        any_value(value) FILTER (WHERE key = 'region') AS region
    FROM tags WHERE key IN ('instance_type', 'region')
    GROUP BY run_id
),
placed AS (
    SELECT
        r.run_id, r.project, r.experiment, r.name, r.status, r."user", r.start_time,
        r.end_time, r.duration_s,
        r.duration_s / 3600.0 AS run_hours,
        greatest(r.duration_s - coalesce(ch.child_s, 0), 0) / 3600.0 AS wall_hours,
        coalesce(t.instance_type, s.instance_type) AS instance_type,
        CASE WHEN t.instance_type IS NOT NULL THEN 'tag' ELSE s.instance_source END
            AS instance_source,
        coalesce(t.region, s.region) AS region,
        coalesce(s.sampled, false) AS sampled,
        s.* EXCLUDE (run_id, instance_type, instance_source, region, sampled)
    FROM folded r
    LEFT JOIN costed s USING (run_id)
    LEFT JOIN placement_tags t USING (run_id)
    LEFT JOIN children ch USING (run_id)
),
catalog AS MATERIALIZED (SELECT item, name, rate FROM pricing),
-- One row per distinct GPU model name: its catalog rate (the longest catalog name found
-- in it as a word, so "A100" matches "NVIDIA A100-SXM4-80GB").
gpu_rates AS (
    SELECT m.gpu_model, arg_max(c.rate, length(c.name)) AS gpu_rate
    FROM (SELECT DISTINCT gpu_model FROM costed WHERE gpu_model IS NOT NULL) m
    JOIN catalog c
      ON c.item = 'gpu'
     AND regexp_matches(m.gpu_model, '(^|[^A-Za-z0-9])' || c.name || '([^A-Za-z0-9]|$)', 'i')
    GROUP BY m.gpu_model
),
defaults AS (
    SELECT
        any_value(rate) FILTER (WHERE item = 'cpu_core' AND name = 'default') AS core_rate,
        any_value(rate) FILTER (WHERE item = 'electricity' AND name = 'default') AS default_kwh_rate,
        any_value(rate) FILTER (WHERE item = 'carbon_intensity' AND name = 'default')
            AS default_intensity
    FROM catalog
),
rated AS (
    SELECT
        p.*,
        i.rate AS instance_rate,
        g.gpu_rate,
        d.core_rate,
        coalesce(k.rate, d.default_kwh_rate) AS kwh_rate,
        ci.rate AS region_intensity,
        d.default_intensity
    FROM placed p
    CROSS JOIN defaults d
    LEFT JOIN (SELECT name, rate FROM catalog WHERE item = 'instance') i
        ON i.name = p.instance_type
    LEFT JOIN gpu_rates g ON g.gpu_model = p.gpu_model
    LEFT JOIN (SELECT name, rate FROM catalog WHERE item = 'electricity') k
        ON k.name = p.region
    LEFT JOIN (SELECT name, rate FROM catalog WHERE item = 'carbon_intensity') ci
        ON ci.name = p.region
),
computed AS (
    SELECT
        *,
        wall_hours * cpu_cores AS core_hours,
        wall_hours * gpu_count AS gpu_hours,
        CASE
            WHEN instance_rate IS NOT NULL THEN wall_hours * instance_rate
            WHEN cpu_cores IS NULL OR gpu_count IS NULL THEN NULL
            ELSE wall_hours * cpu_cores * core_rate
                 + CASE WHEN gpu_count = 0 THEN 0 ELSE wall_hours * gpu_count * gpu_rate END
        END AS compute_usd,
        CASE WHEN getvariable('power_paid') THEN energy_kwh * kwh_rate ELSE 0 END AS energy_usd
    FROM rated
)
SELECT
    run_id, project, experiment, name, status, "user", start_time, end_time, duration_s,
    run_hours, wall_hours, core_hours, gpu_hours, cpu_cores, gpu_count, gpu_model,
    instance_type, instance_source, region,
    energy_kwh, cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh,
    CASE WHEN energy_covered_s > 0 AND duration_s > 0
         THEN least(energy_covered_s / duration_s, 1.0) END AS energy_coverage,
    energy_source, energy_measured,
    coalesce(
        energy_kwh * region_intensity, recorded_emissions_kg, energy_kwh * default_intensity
    ) AS emissions_kg,
    CASE WHEN energy_kwh IS NULL THEN NULL
         WHEN region_intensity IS NOT NULL THEN 'catalog:' || region
         WHEN recorded_emissions_kg IS NOT NULL THEN 'codecarbon'
         ELSE 'catalog:default' END AS emissions_source,
    compute_usd,
    energy_usd,
    compute_usd + energy_usd AS estimated_usd,
    bill_usd,
    coalesce(bill_usd, compute_usd + energy_usd) AS cost_usd,
    CASE
        WHEN bill_usd IS NOT NULL THEN 'bill'
        WHEN compute_usd + energy_usd IS NULL THEN 'unknown'
        WHEN instance_rate IS NOT NULL THEN 'instance'
        ELSE 'core+gpu hours'
    END AS cost_basis,
    concat_ws('; ',
        CASE WHEN bill_usd IS NOT NULL THEN 'billed: ' || bill_source END,
        CASE WHEN instance_type IS NOT NULL AND instance_rate IS NULL
             THEN 'instance type ' || instance_type || ' not in the pricing catalog' END,
        CASE WHEN instance_rate IS NULL AND NOT sampled
             THEN 'no resource samples: CPU cores and GPUs unknown' END,
        CASE WHEN instance_rate IS NULL AND sampled AND gpu_count IS NULL
             THEN 'run ended before its GPUs were probed' END,
        CASE WHEN instance_rate IS NULL AND cpu_cores IS NOT NULL AND gpu_count IS NOT NULL
             THEN 'no instance type: priced by core-hours and GPU-hours at catalog default rates' END,
        CASE WHEN instance_rate IS NULL AND gpu_count > 0 AND gpu_rate IS NULL
             THEN 'GPU model ' || coalesce(gpu_model, '?') || ' not in the pricing catalog' END,
        CASE WHEN getvariable('power_paid') AND energy_kwh IS NULL
             THEN 'power is paid separately but the run has no energy figure' END,
        CASE WHEN wall_hours < run_hours
             THEN 'time its child runs ran is billed to them, not to this run' END,
        CASE WHEN status IN ('running', 'stalled') THEN 'run still open: cost so far' END
    ) AS cost_note
FROM computed;
