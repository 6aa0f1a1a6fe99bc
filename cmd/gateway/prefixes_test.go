package main

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePrefixes(t *testing.T) {
	got, err := parsePrefixes([]string{"10.0.0.0/8, 192.168.1.7", "fd00::/8", "10.1.2.3/16", ""})
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.1.0.0/16"),
	}, got)
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0"} {
		_, err := parsePrefixes([]string{bad})
		assert.Error(t, err, bad)
	}
}
