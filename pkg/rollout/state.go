package rollout

// State is a rollout's state. It is a string so that the API and the state
// file keep the words earlier versions wrote.
//
//	running ──▶ succeeded              every batch stayed healthy for MinHealthy
//	        ──▶ failed                 a batch missed its deadline (Reverted: whether it went back)
//	        ──▶ aborted                the operator stopped it (its batch in progress went back)
type State string

// Rollout states.
const (
	StateRunning   State = "running"
	StateSucceeded State = "succeeded"
	StateFailed    State = "failed"
	StateAborted   State = "aborted"
)

// String returns the state's word.
func (s State) String() string { return string(s) }

// Done reports whether a rollout in state s has ended. Any state but running
// has, including words this version does not know.
func (s State) Done() bool { return s != StateRunning }

// HostState is one host's state in a rollout.
//
//	pending ──▶ replacing ⇄ verifying ──▶ healthy           the batch stayed healthy for MinHealthy
//	            replacing, verifying  ──▶ reverting ──▶ reverted   deadline passed, or abort
//	                                                ──▶ failed     the revert missed its own deadline
//	            replacing, verifying  ──▶ failed                   deadline passed with NoAutoRevert
//
// A host goes from verifying back to replacing when it stops being healthy
// (the MinHealthy count starts again). Hosts of later batches stay pending
// when a rollout ends early.
type HostState string

// Host states.
const (
	HostPending   HostState = "pending"   // not started yet
	HostReplacing HostState = "replacing" // agent converging to the image
	HostVerifying HostState = "verifying" // healthy, waiting out MinHealthy
	HostHealthy   HostState = "healthy"   // done
	HostReverting HostState = "reverting" // going back to the previous image
	HostReverted  HostState = "reverted"  // back on the previous image
	HostFailed    HostState = "failed"    // left as it was: NoAutoRevert, or the revert failed too
)

// String returns the state's word.
func (s HostState) String() string { return string(s) }

// inProgress reports whether a host in state s may be part of a running
// rollout: a running rollout never has a host that ended (reverted, failed)
// nor one in a state this version does not know.
func (s HostState) inProgress() bool {
	switch s {
	case HostPending, HostReplacing, HostVerifying, HostHealthy, HostReverting:
		return true
	}
	return false
}
