-- Every metric point ever logged: the full history, nothing sampled or dropped.
CREATE OR REPLACE VIEW metrics AS
SELECT run_id, project, key, value, step, ts, writer_id, seq
FROM events_metrics;
