-- name: layer_curves
-- purpose: 2 vs 2 accuracy and RSA of every layer space against every word space, in depth
--   order, with each test's FDR p from its sweep and the permutation-null band (null mean ..
--   95th percentile). By default the rows of the layer_curves view: per (layer space, word
--   space) the newest finished sweep whose results were computed from the spaces' current
--   content. With sweep_id, that sweep's rows instead (is_current says whether each row's
--   inputs are still the spaces' content). Against an RDM target each statistic is the mean
--   over its subjects and the noise ceilings (same comparator and concepts) share its scale.
--   ci_low_<test> .. ci_high_<test>: the result's 95% bootstrap interval (a sweep run with
--   --bootstrap N; null without one); ceiling_low_<test> .. ceiling_high_<test>: the target's
--   noise ceiling for that test (the same values as ceiling_lower_<test> / ceiling_upper_<test>;
--   null for a target without subjects).
-- param: model VARCHAR = NULL  only this model (NULL: every model)
-- param: word_space VARCHAR = NULL  only this word space (NULL: every word space)
-- param: sweep_id INTEGER = NULL  rows of this sweep (NULL: the current curves)
-- param: level VARCHAR = 'concept'  concept (concept means) or image (stimuli)
-- columns: model, layer, depth_index, relative_depth, word_space, is_random, accuracy_2v2,
--   p_2v2, p_fdr_2v2, null_mean_2v2, null_q95_2v2, rho_rsa, p_rsa, p_fdr_rsa, null_mean_rsa,
--   null_q95_rsa, n_concepts, n_permutations, similarity, distance, rsa_method, sweep_id,
--   is_current, space, target, n_subjects, ceiling_lower_2v2, ceiling_upper_2v2, ceiling_lower_rsa,
--   ceiling_upper_rsa, level, n_items, permute, ci_low_2v2, ci_high_2v2, ci_low_rsa,
--   ci_high_rsa, ceiling_low_2v2, ceiling_high_2v2, ceiling_low_rsa, ceiling_high_rsa
-- choices: level = concept, image
SELECT
    model,
    layer,
    depth_index,
    relative_depth,
    word_space,
    model LIKE '%-random' AS is_random,
    accuracy_2v2,
    p_2v2,
    p_fdr_2v2,
    null_mean_2v2,
    null_q95_2v2,
    rho_rsa,
    p_rsa,
    p_fdr_rsa,
    null_mean_rsa,
    null_q95_rsa,
    n_concepts,
    n_permutations,
    similarity,
    distance,
    rsa_method,
    sweep_id,
    is_current,
    space,
    target,
    n_subjects,
    ceiling_lower_2v2,
    ceiling_upper_2v2,
    ceiling_lower_rsa,
    ceiling_upper_rsa,
    level,
    n_items,
    permute,
    ci_low_2v2,
    ci_high_2v2,
    ci_low_rsa,
    ci_high_rsa,
    ceiling_low_2v2,
    ceiling_high_2v2,
    ceiling_low_rsa,
    ceiling_high_rsa
FROM sweep_curves
WHERE (CASE WHEN CAST($sweep_id AS INTEGER) IS NULL THEN is_latest
        ELSE sweep_id = CAST($sweep_id AS INTEGER) END)
    AND level = CAST($level AS VARCHAR)
    AND (CAST($model AS VARCHAR) IS NULL OR model = CAST($model AS VARCHAR))
    AND (CAST($word_space AS VARCHAR) IS NULL OR word_space = CAST($word_space AS VARCHAR))
ORDER BY word_space, model, depth_index
