// Package stats holds the one percentile definition of the project. The benchmarks, the demo
// and the chaos suite all report latencies through it, so a p50 printed by one means the same
// as a p50 printed by another.
//
// Percentiles interpolate linearly between the closest ranks (the default of numpy and of most
// spreadsheets): the p-th percentile of n sorted values lies at rank p/100 × (n-1). The 50th
// percentile of an even count is therefore the mean of the two middle values.
package stats
