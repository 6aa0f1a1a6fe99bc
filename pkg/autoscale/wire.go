package autoscale

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The load query between gateways (QueryLoad): the decider asks each
// gateway for a service's buckets since a second; each answers with its
// own. Both are short text, well under Serf's 1 KB answer limit for the
// 120 buckets a Meter keeps:
//
//	request: SERVICE SINCE              "predictor 1764676800"
//	answer:  FIRST V1 V2 …              "1764676801 3.1 4 0 …"
//
// FIRST is the Unix second the first bucket ends; the next ones end a
// second apart (a missing second, a gateway that just started, reads "-").
// Values have one decimal.
const QueryLoad = "herd-load"

// maxLoad bounds a bucket's value: a billion requests in flight is no
// gateway's.
const maxLoad = 1e9

// MaxLoadBuckets bounds an answer's buckets: the Meter's history.
const MaxLoadBuckets = int(MeterKeep / time.Second)

// EncodeLoadRequest is the payload asking for service's buckets ending
// after since.
func EncodeLoadRequest(service string, since time.Time) []byte {
	return []byte(service + " " + strconv.FormatInt(since.Unix(), 10))
}

// DecodeLoadRequest reads a load request.
func DecodeLoadRequest(b []byte) (service string, since time.Time, err error) {
	svc, sec, ok := strings.Cut(string(b), " ")
	if !ok || svc == "" || strings.ContainsAny(svc, " \n") {
		return "", time.Time{}, errors.New("load request: want SERVICE SINCE")
	}
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n < 0 {
		return "", time.Time{}, fmt.Errorf("load request: since %q: want Unix seconds", sec)
	}
	return svc, time.Unix(n, 0), nil
}

// EncodeLoad is the answer carrying samples (one-second buckets, in time
// order).
func EncodeLoad(samples []Sample) []byte {
	if len(samples) == 0 {
		return nil
	}
	if len(samples) > MaxLoadBuckets {
		samples = samples[len(samples)-MaxLoadBuckets:]
	}
	first := samples[0].At.Unix()
	b := strconv.AppendInt(nil, first, 10)
	next := first
	for _, s := range samples {
		for ; next < s.At.Unix(); next++ {
			b = append(b, " -"...)
		}
		if next > s.At.Unix() { // not in order: dropped
			continue
		}
		b = append(b, ' ')
		b = strconv.AppendFloat(b, math.Round(s.InFlight*10)/10, 'f', -1, 64)
		next++
	}
	return b
}

// DecodeLoad reads an answer. It is from another member: anything
// malformed is an error, and no more than MaxLoadBuckets are read.
func DecodeLoad(b []byte) ([]Sample, error) {
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return nil, nil // no buckets yet
	}
	if len(fields)-1 > MaxLoadBuckets {
		return nil, fmt.Errorf("load: %d buckets, want at most %d", len(fields)-1, MaxLoadBuckets)
	}
	first, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil || first < 0 {
		return nil, fmt.Errorf("load: first second %q: want Unix seconds", fields[0])
	}
	out := make([]Sample, 0, len(fields)-1)
	for i, f := range fields[1:] {
		if f == "-" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || !(v >= 0 && v <= maxLoad) { // NaN fails both
			return nil, fmt.Errorf("load: bucket %d: %q: want a number of requests", i, f)
		}
		out = append(out, Sample{At: time.Unix(first+int64(i), 0), InFlight: v})
	}
	return out, nil
}
