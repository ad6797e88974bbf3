-- name: external_join_parquet
-- purpose: per-concept results joined with an external Parquet file keyed by wnid
--   (human ratings, word frequencies, brain-data quality, ...). For every concept of the file
--   that has images, and every model with predictions: the number of images, how many the
--   model's top-1 prediction gets right, and the 1 vs 2 recovery rate of its misclassified
--   images over all stored recovery results of that model (every layer and word space),
--   followed by the file's own columns.
-- param: path VARCHAR = required  the parquet file; must have a column named wnid
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- columns: wnid, name, model, n_images, n_top1_correct, top1_accuracy, n_recovery_tests,
--   recovery_rate, then every column of the file except wnid
WITH ext AS (
    SELECT * FROM read_parquet(CAST($path AS VARCHAR))
), per_image AS (
    SELECT i.wnid, p.model, i.image_id, p.wnid = i.wnid AS top1_correct
    FROM images AS i
    JOIN predictions AS p ON p.image_id = i.image_id AND p.rank = 1
    WHERE CAST($model AS VARCHAR) IS NULL OR p.model = CAST($model AS VARCHAR)
), rec AS (
    SELECT ri.true_wnid AS wnid, r.model, count(*) AS n_recovery_tests,
        avg(CAST(ri.success AS DOUBLE)) AS recovery_rate
    FROM recovery_images AS ri
    JOIN results_recovery AS r ON r.result_id = ri.result_id
    GROUP BY ri.true_wnid, r.model
), per_concept AS (
    SELECT wnid, model, count(*) AS n_images,
        count(*) FILTER (WHERE top1_correct) AS n_top1_correct,
        avg(CAST(top1_correct AS DOUBLE)) AS top1_accuracy
    FROM per_image GROUP BY wnid, model
)
SELECT
    c.wnid,
    c.name,
    pc.model,
    pc.n_images,
    pc.n_top1_correct,
    pc.top1_accuracy,
    coalesce(rec.n_recovery_tests, 0) AS n_recovery_tests,
    rec.recovery_rate,
    ext.* EXCLUDE (wnid)
FROM ext
JOIN concepts AS c ON c.wnid = CAST(ext.wnid AS VARCHAR)
JOIN per_concept AS pc ON pc.wnid = c.wnid
LEFT JOIN rec ON rec.wnid = pc.wnid AND rec.model = pc.model
ORDER BY c.wnid, pc.model
