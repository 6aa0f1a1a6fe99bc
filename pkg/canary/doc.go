// Package canary holds the statistics that judge a canary: what the gateways
// count of each arm (Recorder, Counts), and a pure function (Judge) that
// compares the canary arm (new version) with the baseline arm (old version,
// started at the same time, given the same share of traffic) and answers
// Pass, Fail or Inconclusive with the figures and a reason in words. It
// imports no statistics library; the tests check every formula against
// values worked out by hand.
//
// # What is measured
//
// Per arm: the requests, the errors among them (5xx answers and failed
// exchanges), and the latencies of the requests that did not fail, counted
// in NumBuckets log-linear buckets from 1 µs to 137 s, each bucket's
// midpoint within 3.1 % of the latencies it holds. Every gateway keeps one
// Recorder per arm, cumulative from its start; a step's Counts are the
// difference of the snapshots at its end and its start (Counts.Sub), summed
// over the gateways (Counts.Add). Counts merge exactly, which a sample of
// latencies does not: a reservoir kept by each gateway could not be combined
// into a uniform sample of all the requests without knowing how many each
// had seen and drawing again. Counts.Arm expands the buckets into the
// latencies Judge reads, at most about 20,000 of them, from which the
// percentiles and the rank test are computed.
//
// # The rules
//
//  1. Too little traffic is never a pass. While either arm has fewer than
//     MinRequests requests (default 200) the verdict is Inconclusive; the
//     caller waits, and at its deadline fails the canary. A canary that got
//     no traffic cannot pass.
//  2. Errors. The canary is within the limit when its error rate is at most
//     MaxErrorRate. Over it, it fails only if it is also worse than the
//     baseline beyond chance: Fisher's exact test, one-sided, p < Alpha.
//     Over the limit but not significantly worse (too few requests yet to
//     tell, or the baseline errs as much: a shared dependency is down) is
//     Inconclusive: more data settles it, and the deadline fails it closed.
//  3. Latency (when MaxP99Ratio is set). Each arm needs MinPoints (50)
//     latencies of successful requests, else Inconclusive. The canary is
//     within the limit when its p99 is at most MaxP99Ratio times the
//     baseline's, or at most P99Slack above it (a ratio of two latencies
//     of a millisecond is noise). Over it, it fails only if the Mann–Whitney test also finds
//     it slower, one-sided, p < Alpha; otherwise Inconclusive, as for errors.
//  4. Any check that fails fails the canary; else any inconclusive check
//     makes the verdict Inconclusive; else it passes. Invalid Criteria fail.
//
// Each rule pairs a limit with a test because each alone misleads. A limit
// alone fails good versions on noise: a p99 read from 200 requests rests on
// its two slowest, and 3 errors in 200 requests from a version that errs
// 0.5 % of the time happen 8 times in 100. A test alone fails good versions
// on differences too small to matter: with 20,000 latencies per arm
// (Counts.Arm's most) the rank test sees a 1 % shift. The limit says how
// much worse matters; the test says the difference is not chance. And a
// canary over a limit that the test cannot yet confirm is not passed, only
// not yet failed.
//
// # The statistics, in plain words
//
// Fisher's exact test (Fisher 1922) takes the errors of both arms together
// and asks: if every request had had the same chance of failing, how likely
// is it that at least as many of them would have landed on the canary? That
// is a hypergeometric tail, computed exactly, so it holds for the handful of
// errors a healthy service makes, where a z-test's normal approximation does
// not.
//
// The Mann–Whitney U test (Mann and Whitney 1947; Wilcoxon's rank-sum test)
// counts, over all pairs of one canary and one baseline latency, how often
// the canary's is the larger (ties count one half). If the versions are
// alike that count is about half the pairs; its spread is known, so its
// distance from the middle gives a p-value, here by the normal approximation
// with a correction for ties and a continuity correction (as
// scipy.stats.mannwhitneyu), exact for small tie-free samples. It compares
// whole distributions by rank, so a few huge outliers do not dominate it, but
// it barely sees a change in the tail alone: that is why the p99 ratio is the
// limit, and why a p99 over the limit the test does not confirm is
// Inconclusive, not a pass.
//
// Nothing here is ever NaN: a rate of no requests is reported as absent
// (Arm.ErrorRate's false) or 0 in Figures, all-equal latencies give the rank
// test's p = 1, and a baseline p99 under 1 µs counts as 1 µs in the ratio.
//
// # References
//
//   - H. B. Mann, D. R. Whitney, "On a test of whether one of two random
//     variables is stochastically larger than the other", Annals of
//     Mathematical Statistics 18(1), 1947.
//   - R. A. Fisher, "On the interpretation of χ² from contingency tables, and
//     the calculation of P", Journal of the Royal Statistical Society 85(1),
//     1922.
//   - G. Tene, HdrHistogram (http://hdrhistogram.org): the log-linear
//     buckets, a power of two split into equal sub-buckets, that Counts
//     uses.
//   - Kayenta, Netflix and Google's canary judge, classifies each metric
//     with a Mann–Whitney test and an effect size; Spinnaker's guide asks for
//     at least 50 data points per metric
//     (https://spinnaker.io/guides/user/canary/best-practices), hence
//     MinPoints. Its issues show why a rank test alone is not enough
//     (spinnaker/kayenta#780: a canary with a much wider spread passes).
package canary
