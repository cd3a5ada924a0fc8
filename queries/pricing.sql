-- The pricing catalog (shipped defaults + [pricing] in ledger.toml), one row per price,
-- each with its unit, source, date and origin (shipped: typed in by hand; codecarbon: read
-- from the installed codecarbon's data files; ledger.toml: the store's own). Bound by
-- ledger.analytics.pricing at connect.
CREATE OR REPLACE VIEW pricing AS
SELECT
    p.item,
    p.name,
    p.rate,
    p.unit,
    p.source,
    p.as_of,
    p.gpus,
    p.gpu_model,
    p.vcpus,
    p.origin
FROM (
    SELECT unnest(
        from_json(
            getvariable('pricing_json'),
            '[{"item": "VARCHAR", "name": "VARCHAR", "rate": "DOUBLE", "unit": "VARCHAR",
               "source": "VARCHAR", "as_of": "VARCHAR", "gpus": "BIGINT",
               "gpu_model": "VARCHAR", "vcpus": "BIGINT", "origin": "VARCHAR"}]'
        )
    ) AS p
);
