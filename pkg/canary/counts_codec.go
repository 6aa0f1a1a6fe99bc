package canary

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// countsVersion is the first byte of an encoded Counts. A decoder refuses
// any other: gateways of two versions of Herd mixed in one cluster fail the
// figures query loudly rather than misread each other's counts.
const countsVersion = 1

// MarshalBinary encodes c sparsely: the version byte, Requests and Errors as
// uvarints, then for each non-empty bucket in increasing order a uvarint
// pair (its index minus the previous non-empty bucket's, the first counted
// from -1; its count). One arm's counts of a step, in 30 to 100 buckets,
// take 70 to 300 bytes; a gateway's cumulative counts of days, with counts
// in the millions, 400 to 600; the largest possible encoding is 4,949
// bytes. It never fails.
func (c Counts) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+4*c.nonEmpty())
	b = append(b, countsVersion)
	b = binary.AppendUvarint(b, c.Requests)
	b = binary.AppendUvarint(b, c.Errors)
	prev := -1
	for i, n := range c.Buckets {
		if n == 0 {
			continue
		}
		b = binary.AppendUvarint(b, uint64(i-prev))
		b = binary.AppendUvarint(b, n)
		prev = i
	}
	return b, nil
}

func (c *Counts) nonEmpty() int {
	n := 0
	for _, k := range c.Buckets {
		if k != 0 {
			n++
		}
	}
	return n
}

// UnmarshalBinary decodes what MarshalBinary encodes, strictly: only the
// known version, every uvarint in its shortest form, bucket indexes
// increasing and below NumBuckets, no zero counts, no bytes left over. So
// the encoding of a Counts is unique, and whatever decodes encodes back to
// the same bytes. On error c is left as it was.
func (c *Counts) UnmarshalBinary(data []byte) error {
	if len(data) == 0 {
		return errors.New("counts: empty encoding")
	}
	if data[0] != countsVersion {
		return fmt.Errorf("counts: encoding version %d, want %d", data[0], countsVersion)
	}
	d := decoder{data: data, off: 1}
	var out Counts
	var err error
	if out.Requests, err = d.uvarint("requests"); err != nil {
		return err
	}
	if out.Errors, err = d.uvarint("errors"); err != nil {
		return err
	}
	prev := -1
	for d.off < len(data) {
		at := d.off
		delta, err := d.uvarint("bucket index")
		if err != nil {
			return err
		}
		if delta == 0 || delta > uint64(NumBuckets-1-prev) {
			return fmt.Errorf("counts: byte %d: bucket index step %d after bucket %d out of range 1-%d",
				at, delta, prev, NumBuckets-1-prev)
		}
		i := prev + int(delta)
		at = d.off
		n, err := d.uvarint("bucket count")
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("counts: byte %d: bucket %d with a count of 0 (empty buckets are left out)", at, i)
		}
		out.Buckets[i] = n
		prev = i
	}
	*c = out
	return nil
}

// decoder reads uvarints from data, from off on.
type decoder struct {
	data []byte
	off  int
}

func (d *decoder) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(d.data[d.off:])
	switch {
	case n == 0:
		return 0, fmt.Errorf("counts: byte %d: %s cut short", d.off, what)
	case n < 0:
		return 0, fmt.Errorf("counts: byte %d: %s overflows 64 bits", d.off, what)
	case n > 1 && d.data[d.off+n-1] == 0:
		// A final byte of 0 adds nothing: a longer form of a shorter
		// uvarint, which would make two encodings of one Counts.
		return 0, fmt.Errorf("counts: byte %d: %s not in its shortest form", d.off, what)
	}
	d.off += n
	return v, nil
}
