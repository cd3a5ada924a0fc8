-- What each run's cost events say, one row per run: its hardware and placement (the
-- latest resources document per machine, added up over machines), its energy (the
-- latest cumulative figures, per machine, added up), its bills. The priced report is
-- run_costs (queries/run_costs_over.sql prices these rows).
--
-- This view folds every cost event and stays the reference; the cost report reads the
-- same rows from the per-file cost summaries where they exist (analytics/cost_summaries.py,
-- ledger/cost_summaries.py), with these raw folds for the files that have none.
--
-- Built to stay fast at a million runs: a run written by one process is folded in one
-- aggregation (per_run -> single), not three; each JSON attrs document is parsed once
-- (from_json into a struct, after arg_max has kept one document per group where it can).
CREATE OR REPLACE VIEW cost_inputs AS
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
)
SELECT * FROM single UNION ALL BY NAME SELECT * FROM multi;
