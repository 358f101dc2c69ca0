package vecmath

import (
	"fmt"
	"strings"
)

// Metric is how vectors are compared: the one metric type of the project
// (ivf.Metric is this type).
type Metric int

const (
	// L2 is the squared Euclidean distance (smaller is closer;
	// faiss.METRIC_L2).
	L2 Metric = iota
	// InnerProduct is the dot product (larger is closer;
	// faiss.METRIC_INNER_PRODUCT).
	InnerProduct
	// Cosine is the cosine similarity (larger is closer): an index
	// L2-normalizes vectors on add and search and remembers it.
	Cosine
)

// String returns "l2", "ip" or "cosine", the names ParseMetric reads and
// the benchmark scripts use.
func (m Metric) String() string {
	switch m {
	case L2:
		return "l2"
	case InnerProduct:
		return "ip"
	case Cosine:
		return "cosine"
	}
	return fmt.Sprintf("metric(%d)", int(m))
}

// HigherIsBetter reports whether larger scores are closer.
func (m Metric) HigherIsBetter() bool { return m != L2 }

// ParseMetric reads "l2", "ip" (or "inner_product") and "cosine".
func ParseMetric(s string) (Metric, error) {
	switch strings.ToLower(s) {
	case "l2", "euclidean":
		return L2, nil
	case "ip", "inner_product", "dot":
		return InnerProduct, nil
	case "cosine", "angular":
		return Cosine, nil
	}
	return 0, fmt.Errorf("unknown metric %q (want l2, ip or cosine)", s)
}
