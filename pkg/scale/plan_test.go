package scale

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSpread(t *testing.T) {
	rooms := func(max ...int) []room {
		var out []room
		for i, m := range max {
			out = append(out, room{node: "host-" + string(rune('1'+i)), max: m, limit: "its maximum is " + strconv.Itoa(m)})
		}
		return out
	}
	cases := []struct {
		name  string
		total int
		rooms []room
		want  []int // by host-1, host-2, …
	}{
		{"even", 24, rooms(1000, 1000, 1000), []int{8, 8, 8}},
		{"remainder to the first in name order", 13, rooms(1000, 1000, 1000), []int{5, 4, 4}},
		{"one more is one agent more", 14, rooms(1000, 1000, 1000), []int{5, 5, 4}},
		{"fewer than agents", 2, rooms(1000, 1000, 1000), []int{1, 1, 0}},
		{"zero", 0, rooms(1000, 1000), []int{0, 0}},
		{"one agent short of room", 30, rooms(1000, 4, 1000), []int{13, 4, 13}},
		{"two short, the rest spread again", 30, rooms(2, 1000, 3, 1000), []int{2, 13, 3, 12}},
		{"exactly the room", 12, rooms(4, 4, 4), []int{4, 4, 4}},
		{"a cap that makes another's share exceed its room", 10, rooms(1, 4, 5), []int{1, 4, 5}},
		{"one agent", 7, rooms(7), []int{7}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := spread(tc.total, tc.rooms)
			require.NoError(t, err)
			sum := 0
			for i, r := range tc.rooms {
				assert.Equal(t, tc.want[i], got[r.node], r.node)
				assert.LessOrEqual(t, got[r.node], r.max, "within %s's room", r.node)
				sum += got[r.node]
			}
			assert.Equal(t, tc.total, sum)
		})
	}

	// Name order, not the order given.
	got, err := spread(4, []room{{node: "b", max: 10}, {node: "a", max: 10}, {node: "c", max: 10}})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"a": 2, "b": 1, "c": 1}, got)

	_, err = spread(13, rooms(4, 4, 4))
	var nr *NoRoomError
	require.ErrorAs(t, err, &nr)
	assert.ErrorIs(t, err, ErrRefused)
	assert.EqualError(t, err, "13 replicas do not fit: the agents have room for 12 "+
		"(host-1 4 (its maximum is 4), host-2 4 (its maximum is 4), host-3 4 (its maximum is 4))")
	_, err = spread(1, nil)
	assert.Error(t, err)
}
