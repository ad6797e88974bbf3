-- name: external_join_images_csv
-- purpose: per-image results joined with an external CSV file (header row, read with
--   read_csv_auto) keyed by stimulus
--   (per-image ratings, memorability, a subject's responses, ...). For every image of the
--   file and every model with predictions: its concept, the model's top-1 class and whether
--   it is right (NULL, with top1_note, when the concept is not one of the model's classes),
--   and its 1 vs 2 recovery outcomes over all stored recovery results of that model,
--   followed by the file's own columns.
-- param: path VARCHAR = required  the csv file; must have a column named stimulus
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- columns: stimulus, image_id, concept, model, top1_wnid, top1_correct, top1_note,
--   n_recovery_tests, n_recovered, then every column of the file except stimulus
WITH ext AS (
    SELECT * FROM read_csv_auto(CAST($path AS VARCHAR))
), rec AS (
    SELECT ri.image_id, r.model, count(*) AS n_recovery_tests,
        count(*) FILTER (WHERE ri.success) AS n_recovered
    FROM recovery_images AS ri
    JOIN results_recovery AS r ON r.result_id = ri.result_id
    GROUP BY ri.image_id, r.model
)
SELECT
    i.stimulus,
    i.image_id,
    i.concept,
    p.model,
    p.wnid AS top1_wnid,
    CASE WHEN c.imagenet_index IS NOT NULL THEN p.wnid = c.wnid END AS top1_correct,
    CASE WHEN c.imagenet_index IS NULL
        THEN 'not one of the model''s classes (no ImageNet-1k class for this concept)'
    END AS top1_note,
    coalesce(rec.n_recovery_tests, 0) AS n_recovery_tests,
    coalesce(rec.n_recovered, 0) AS n_recovered,
    ext.* EXCLUDE (stimulus)
FROM ext
JOIN images AS i ON i.stimulus = CAST(ext.stimulus AS VARCHAR)
JOIN concepts AS c ON c.concept = i.concept
JOIN predictions AS p ON p.image_id = i.image_id AND p.rank = 1
LEFT JOIN rec ON rec.image_id = i.image_id AND rec.model = p.model
WHERE CAST($model AS VARCHAR) IS NULL OR p.model = CAST($model AS VARCHAR)
ORDER BY i.stimulus, p.model
