-- name: recovery_skipped
-- purpose: 1 vs 2 recovery runs that stored no results because the test does not apply, and
--   why: the model's classes cover fewer than four of the concepts of its images (a lab's
--   own concepts without ImageNet-1k classes), or no misclassified image had both its
--   concept and its prediction in the word space. One row per recorded skip, newest first.
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- columns: analysis_id, model, word_space, layers, n_concepts, n_class_concepts, reason,
--   started_at
SELECT
    r.analysis_id,
    CAST(r.params AS JSON)->>'model' AS model,
    CAST(r.params AS JSON)->>'word_space' AS word_space,
    CAST(CAST(r.params AS JSON)->'layers' AS VARCHAR) AS layers,
    CAST(CAST(r.params AS JSON)->>'n_concepts' AS BIGINT) AS n_concepts,
    CAST(CAST(r.params AS JSON)->>'n_class_concepts' AS BIGINT) AS n_class_concepts,
    CAST(r.params AS JSON)->>'skipped' AS reason,
    r.started_at
FROM analysis_runs AS r
WHERE r.kind = 'recovery'
    AND CAST(r.params AS JSON)->>'skipped' IS NOT NULL
    AND (CAST($model AS VARCHAR) IS NULL
        OR CAST(r.params AS JSON)->>'model' = CAST($model AS VARCHAR))
ORDER BY r.started_at DESC, r.analysis_id DESC
