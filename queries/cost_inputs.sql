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
    SELECT *,
        from_json(r_attrs, '{"host": "VARCHAR", "cpu_cores": "DOUBLE", "gpu_count": "DOUBLE",
                             "gpu_model": "VARCHAR", "instance_type": "VARCHAR",
                             "instance_source": "VARCHAR", "region": "VARCHAR"}') AS a,
        from_json(e_attrs, '{"covered_s": "DOUBLE"}').covered_s AS covered_s
    FROM per_run WHERE writer_min = writer_max AND writers_known
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
        from_json(e_attrs, '{"covered_s": "DOUBLE"}').covered_s AS covered_s
    FROM writers
)
SELECT * FROM cost_inputs_over('single', 'parsed');
