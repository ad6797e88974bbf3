-- name: measure_curves
-- purpose: one measure's curve over the layers of every model against every word space: 2 vs 2,
--   RSA, linear CKA (cka), mutual k-NN alignment (knn) or regression 2 vs 2 (reg2v2), with its
--   FDR p from its sweep and the permutation-null band (null mean .. 95th percentile); against
--   an RDM target the statistic is the mean over subjects and the noise ceiling (same
--   comparator and concepts) is on the same scale (ceiling_low .. ceiling_high; ceiling_lower
--   and ceiling_upper are the same values); ci_low .. ci_high is the result's 95% bootstrap
--   interval (a sweep run with --bootstrap N, for the measures that have one). By
--   default the newest finished sweep per (layer space, word space, measure, variant) whose
--   results were computed from the spaces' current content; with sweep_id, that sweep's rows.
-- param: measure VARCHAR = '2v2'  2v2, rsa, cka, knn or reg2v2
-- param: variant VARCHAR = NULL  only this variant (unbiased, biased, k=10, cosine, ...)
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- param: sweep_id INTEGER = NULL  rows of this sweep (NULL: the current curves)
-- param: level VARCHAR = 'concept'  concept (concept means) or image (stimuli)
-- columns: model, layer, depth_index, relative_depth, word_space, is_random, measure, variant,
--   statistic, p_value, p_fdr, null_mean, null_q95, n_concepts, n_permutations, sweep_id,
--   result_id, is_current, space, target, n_subjects, ceiling_lower, ceiling_upper, level,
--   n_items, permute, ci_low, ci_high, ceiling_low, ceiling_high
-- choices: measure = @measures; level = concept, image
SELECT
    model,
    layer,
    depth_index,
    relative_depth,
    word_space,
    model LIKE '%-random' AS is_random,
    measure,
    variant,
    statistic,
    p_value,
    p_fdr,
    null_mean,
    null_q95,
    n_concepts,
    n_permutations,
    sweep_id,
    result_id,
    is_current,
    space,
    target,
    n_subjects,
    ceiling_lower,
    ceiling_upper,
    level,
    n_items,
    permute,
    ci_low,
    ci_high,
    ceiling_low,
    ceiling_high
FROM measure_curves
WHERE measure = CAST($measure AS VARCHAR)
    AND (CASE WHEN CAST($sweep_id AS INTEGER) IS NULL THEN is_latest
        ELSE sweep_id = CAST($sweep_id AS INTEGER) END)
    AND level = CAST($level AS VARCHAR)
    AND (CAST($variant AS VARCHAR) IS NULL OR variant = CAST($variant AS VARCHAR))
    AND (CAST($model AS VARCHAR) IS NULL OR model = CAST($model AS VARCHAR))
    AND (CAST($word_space AS VARCHAR) IS NULL OR word_space = CAST($word_space AS VARCHAR))
ORDER BY word_space, model, variant, depth_index
