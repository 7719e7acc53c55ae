package lab

import (
	"fmt"
	"sort"
)

// Summary is the median and range of repeated measurements: what a re-run
// is compared against. The machine is shared and noisy, so the report quotes
// medians and shows min–max next to them.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the median (the mean of the middle two for an even
// count), minimum and maximum of v. An empty v gives the zero Summary.
func Summarize(v []float64) Summary {
	if len(v) == 0 {
		return Summary{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Summary{Median: med, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// OK reports whether the summary holds any measurement.
func (s Summary) OK() bool { return s.N > 0 }

// String prints "1.23 (1.10–1.31)", or "n/a" with no measurement.
func (s Summary) String() string {
	if !s.OK() {
		return "n/a"
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

func median(v []float64) float64 { return Summarize(v).Median }
