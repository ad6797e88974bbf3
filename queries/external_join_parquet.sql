-- name: external_join_parquet
-- purpose: per-concept results joined with an external Parquet file keyed by concept
--   (human ratings, word frequencies, brain-data quality, ...). For every concept of the file
--   that has images, and every model with predictions: the number of images, how many the
--   model's top-1 prediction gets right, and the 1 vs 2 recovery rate of its misclassified
--   images over all stored recovery results of that model (every layer and word space),
--   followed by the file's own columns. Top-1 accuracy applies only to a concept that is one
--   of the model's classes (an ImageNet-1k class, by its wnid): for any other concept (a lab's
--   own, without an ImageNet class) its top-1 columns are NULL and top1_note says why.
--   The file's key column `concept` holds concept ids (WordNet ids are ids too).
-- param: path VARCHAR = required  the parquet file; must have a column named concept
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- columns: concept, name, wnid, model, n_images, n_top1_correct, top1_accuracy, top1_note,
--   n_recovery_tests, recovery_rate, then every column of the file except concept
WITH ext AS (
    SELECT * FROM read_parquet(CAST($path AS VARCHAR))
), per_image AS (
    SELECT i.concept, p.model, i.image_id, p.wnid = c.wnid AS top1_correct,
        c.imagenet_index IS NOT NULL AND p.wnid NOT LIKE 'class:%' AS top1_applies
    FROM images AS i
    JOIN concepts AS c ON c.concept = i.concept
    JOIN predictions AS p ON p.image_id = i.image_id AND p.rank = 1
    WHERE CAST($model AS VARCHAR) IS NULL OR p.model = CAST($model AS VARCHAR)
), rec AS (
    SELECT ri.true_concept AS concept, r.model, count(*) AS n_recovery_tests,
        avg(CAST(ri.success AS DOUBLE)) AS recovery_rate
    FROM recovery_images AS ri
    JOIN results_recovery AS r ON r.result_id = ri.result_id
    GROUP BY ri.true_concept, r.model
), per_concept AS (
    SELECT concept, model, count(*) AS n_images, bool_and(top1_applies) AS top1_applies,
        count(*) FILTER (WHERE top1_correct) AS n_top1_correct,
        avg(CAST(top1_correct AS DOUBLE)) AS top1_accuracy
    FROM per_image GROUP BY concept, model
)
SELECT
    c.concept,
    c.name,
    c.wnid,
    pc.model,
    pc.n_images,
    CASE WHEN pc.top1_applies THEN pc.n_top1_correct END AS n_top1_correct,
    CASE WHEN pc.top1_applies THEN pc.top1_accuracy END AS top1_accuracy,
    CASE WHEN NOT pc.top1_applies
        THEN 'not one of the model''s classes (no ImageNet-1k class for this concept)'
    END AS top1_note,
    coalesce(rec.n_recovery_tests, 0) AS n_recovery_tests,
    rec.recovery_rate,
    ext.* EXCLUDE (concept)
FROM ext
JOIN concepts AS c ON c.concept = CAST(ext.concept AS VARCHAR)
JOIN per_concept AS pc ON pc.concept = c.concept
LEFT JOIN rec ON rec.concept = pc.concept AND rec.model = pc.model
ORDER BY c.concept, pc.model
