"""Transition tables: the one rule for what is valid and what is terminal, and sampling a successor.

``MRP``, ``MDP`` and ``minippo.envs.TabularMDPEnv`` all check their tables and sample from them here.

**The rule.**  A transition table P is a dense array or a ``scipy.sparse`` matrix whose row s holds
P(s'|s).  Every entry is finite and >= 0, and every row sums either to 1, within
max(1e-12, n·2.2e-16) for a row of n entries (``row_sum_tolerance``: the rounding of adding n
terms), or to exactly 0.  A row that sums to 0 is a **terminal state**: its reward is collected
and the episode ends.  An MDP has one table per action, and a terminal state must have an all-zero
row under every action (a policy that mixed a terminal action with a moving one would otherwise
make a row that sums to neither 0 nor 1).

The functions that return a checked value convert it (to float64, canonical CSR for sparse
input); errors name the argument and quote the first offending entry.  All checks are vectorized.
"""
import collections

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph


def row_sum_tolerance(n):
    """How far a row of ``n`` probabilities may sum from 1: max(1e-12, n·eps), eps = 2.2e-16."""
    return max(1e-12, n * np.finfo(np.float64).eps)


# --------------------------------------------------------------------- transition tables
def as_transition_matrix(P, argument):
    """A float64 copy of P: an ndarray, or if sparse a canonical ``csr_array`` (sorted, no duplicates or zeros)."""
    expected = "a square (S, S) matrix of transition probabilities (array or scipy.sparse)"
    if scipy.sparse.issparse(P):
        if P.dtype.kind not in "biuf":
            raise TypeError(f"{argument} must be {expected}; got a sparse matrix of dtype {P.dtype}")
        P = scipy.sparse.csr_array(P, dtype=np.float64, copy=True)
        P.sum_duplicates()
        P.eliminate_zeros()
    else:
        P = as_float_array(P, argument, expected)
    if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] == 0:
        raise ValueError(f"{argument} must be {expected}; got shape {P.shape}")
    return P


def as_transition_matrices(P):
    """Per-action matrices: a float64 (A, S, S) ndarray, or a list of canonical ``csr_array``."""
    expected = "an (A, S, S) array or a list of A scipy.sparse (S, S) matrices"
    if isinstance(P, (list, tuple)) and P and all(scipy.sparse.issparse(P_a) for P_a in P):
        matrices = [as_transition_matrix(P_a, f"P[{a}]") for a, P_a in enumerate(P)]
    elif scipy.sparse.issparse(P) or (isinstance(P, (list, tuple)) and any(map(scipy.sparse.issparse, P))):
        raise TypeError(f"P must be {expected}; got a single sparse matrix or a list mixing sparse and dense ones")
    else:
        matrices = as_float_array(P, "P", expected)
        if matrices.ndim != 3 or matrices.shape[1] != matrices.shape[2] or 0 in matrices.shape:
            raise ValueError(f"P must be {expected}; got shape {matrices.shape}")
    for a, P_a in enumerate(matrices):
        if P_a.shape != matrices[0].shape:
            raise ValueError(
                f"P[{a}] has shape {P_a.shape} but P[0] has shape {matrices[0].shape}; "
                f"every action needs the same states"
            )
    return matrices


def terminal_states(P, argument, names):
    """Check P by the rule (module docstring) and return its terminal-state mask (the rows summing to 0).

    ``P`` comes from ``as_transition_matrix``; ``names`` (or None) label the states in messages.
    """
    entries = P.data if scipy.sparse.issparse(P) else P.ravel()

    def entry_name(k):  # "P[row, column]" of entries[k]
        if scipy.sparse.issparse(P):
            row, column = int(np.searchsorted(P.indptr, k, side="right")) - 1, int(P.indices[k])
        else:
            row, column = divmod(int(k), P.shape[1])
        between = "" if names is None else f" (from {names[row]!r} to {names[column]!r})"
        return f"{argument}[{row}, {column}]{between}"

    bad = np.flatnonzero(~np.isfinite(entries))
    if bad.size:
        raise ValueError(f"{entry_name(bad[0])} is {entries[bad[0]]}; transition probabilities must be finite")
    bad = np.flatnonzero(entries < 0)
    if bad.size:
        raise ValueError(f"{entry_name(bad[0])} = {entries[bad[0]]} is negative; probabilities must be >= 0")
    row_sums = np.asarray(P.sum(axis=1)).ravel()
    terminal = row_sums == 0
    bad = np.flatnonzero(~terminal & (np.abs(row_sums - 1) > row_sum_tolerance(P.shape[1])))
    if bad.size:
        row = bad[0]
        state = "" if names is None else f" (state {names[row]!r})"
        others = f" ({bad.size - 1} more rows are invalid)" if bad.size > 1 else ""
        raise ValueError(
            f"row {row}{state} of {argument} sums to {float(row_sums[row])}; "
            f"each row must sum to 1, or 0 for a terminal state{others}"
        )
    return terminal


def common_terminal_states(P, names, argument="P"):
    """Terminal mask of an MDP: every P[a] must be valid and agree on which rows are all zero."""
    terminal = terminal_states(P[0], f"{argument}[0]", names)
    for a in range(1, len(P)):
        mismatch = np.flatnonzero(terminal_states(P[a], f"{argument}[{a}]", names) != terminal)
        if mismatch.size:
            state = mismatch[0] if names is None else repr(names[mismatch[0]])
            raise ValueError(
                f"state {state} has an all-zero (terminal) row in one of {argument}[0], {argument}[{a}] but not "
                f"the other; a terminal state must be terminal under every action"
            )
    return terminal


def require_termination(P, terminal, states):
    """Raise unless every state can reach a terminal state (≡ absorption w.p. 1 in a finite chain)."""
    if terminal.any():
        # Multi-source breadth-first search from the terminal states along reversed edges.
        steps = scipy.sparse.csgraph.dijkstra(
            P.T, directed=True, indices=np.flatnonzero(terminal), unweighted=True, min_only=True
        )
        stuck = np.flatnonzero(np.isinf(steps))
    else:
        stuck = np.arange(P.shape[0])
    if stuck.size:
        raise ValueError(
            f"gamma = 1 requires every state to reach a terminal state, but state {states[stuck[0]]!r} never "
            f"does ({stuck.size} of {P.shape[0]} states cannot), so its value is not finite; "
            f"use gamma < 1 or add transitions to a terminal state"
        )


def require_proper_policies(P, terminal, states, actions):
    """Raise unless every policy reaches a terminal state with probability 1 (needed for γ = 1).

    Some policy avoids termination forever iff there is a non-empty set W of non-terminal
    states in each of which some action keeps the next state inside W.  The largest such
    W is found by peeling: start from all non-terminal states and repeatedly drop those
    whose every action has a positive probability of leaving W.
    """
    inside = ~terminal
    while True:
        outside = (~inside).astype(np.float64)
        stays = np.column_stack([P_a @ outside == 0 for P_a in P])  # stays[s, a]: action a keeps s inside W
        still_inside = inside & stays.any(axis=1)
        if np.array_equal(still_inside, inside):
            break
        inside = still_inside
    if inside.any():
        trapped = np.flatnonzero(inside)
        s = trapped[0]
        shown = ", ".join(repr(states[i]) for i in trapped[:5]) + (", ..." if trapped.size > 5 else "")
        raise ValueError(
            f"gamma = 1 requires every policy to reach a terminal state, but a policy can keep the episode "
            f"among states {shown} forever (e.g. action {actions[np.flatnonzero(stays[s])[0]]!r} in state "
            f"{states[s]!r} never leaves them), so its value is not finite; use gamma < 1"
        )


def as_policy_weights(policy, n_states, n_actions):
    """The policy as an (S, A) array of probabilities π(a|s) (one-hot for a deterministic one).

    ``policy`` is an int array of one action index per state, or an (S, A) array whose rows
    are probability vectors (each summing to 1 within ``row_sum_tolerance(A)``).
    """
    S, A = n_states, n_actions
    expected = f"an int array of shape ({S},) (one action per state) or a ({S}, {A}) array of probabilities"
    array = np.asarray(policy)
    if array.shape == (S,):
        if array.dtype.kind not in "iu":
            raise TypeError(f"policy must be {expected}; got dtype {array.dtype}")
        bad = np.flatnonzero((array < 0) | (array >= A))
        if bad.size:
            raise ValueError(f"policy[{bad[0]}] = {array[bad[0]]} is not an action index in [0, {A})")
        return np.eye(A)[array]
    weights = as_finite_array(array, "policy", (S, A), expected)
    bad = np.argwhere(weights < 0)
    if bad.size:
        s, a = bad[0]
        raise ValueError(f"policy[{s}, {a}] = {weights[s, a]} is negative; probabilities must be >= 0")
    sums = weights.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > row_sum_tolerance(A))
    if bad.size:
        s = bad[0]
        raise ValueError(f"row {s} of policy sums to {float(sums[s])}; action probabilities must sum to 1")
    return weights


# --------------------------------------------------------------------- sampling
def successor_sampler(P):
    """A function (rows, uniforms) -> one successor s' ~ P(·|row) for each row, by inverse CDF.

    ``P`` is a checked table with S columns and any number of rows (the (A·S, S) stack of an
    MDP's tables too).  ``rows`` must not be terminal (all-zero) rows, and ``uniforms`` holds
    one u ~ Uniform[0, 1) per row.

    Every stored entry j of row r gets the key r + F_r(j), where F_r(j) is the cumulative
    probability of the row up to and including entry j (so row r ends exactly at r + 1).  The
    keys of all rows form one sorted array, and the first key greater than r + u is the sampled
    entry of row r: one ``searchsorted`` for every row at once, for dense and sparse P alike.
    Probabilities are resolved to about r·1e-16 (the spacing of floats near r).
    """
    P = scipy.sparse.csr_array(P)  # a checked P stores no zeros: every stored entry is a possible successor
    row_lengths = np.diff(P.indptr)
    row_of_entry = np.repeat(np.arange(P.shape[0]), row_lengths)
    cumulative = np.cumsum(P.data)
    total_before_row = np.concatenate([[0.0], cumulative])[P.indptr[:-1]]
    within_row = cumulative - total_before_row[row_of_entry]
    row_total = np.zeros(P.shape[0])
    nonempty = row_lengths > 0
    row_total[nonempty] = within_row[P.indptr[1:][nonempty] - 1]
    keys = row_of_entry + within_row / row_total[row_of_entry]

    def sample(rows, uniforms):
        entry = np.searchsorted(keys, rows + uniforms, side="right")
        return P.indices[np.minimum(entry, P.indptr[rows + 1] - 1)]  # rounding can land past the row's end

    return sample


# --------------------------------------------------------------------- arrays and names
def as_float_array(value, argument, expected):
    """``value`` as a new float64 array; TypeError if it is not numeric."""
    try:
        array = np.array(value)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{argument} must be {expected}; {error}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must be {expected}; got {type(value).__name__} of dtype {array.dtype}")
    return array.astype(np.float64)


def as_finite_array(value, argument, shape, meaning):
    """A float64 array of exactly ``shape`` with finite entries."""
    shape_text = f"({shape[0]},)" if len(shape) == 1 else str(shape)
    array = as_float_array(value, argument, f"an array of shape {shape_text} ({meaning})")
    if array.shape != shape:
        raise ValueError(f"{argument} must have shape {shape_text} ({meaning}); got shape {array.shape}")
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = ", ".join(str(i) for i in bad[0])
        raise ValueError(f"{argument}[{index}] is {array[tuple(bad[0])]}; {argument} must be finite")
    return array


def as_names(names, count, argument, unit="states"):
    """A tuple of ``count`` unique hashable names (default 0, 1, ..., count − 1)."""
    if names is None:
        return tuple(range(count))
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
        raise TypeError(f"{argument} must be a list of {count} names; got {type(names).__name__}")
    names = tuple(names.tolist() if isinstance(names, np.ndarray) else names)
    if len(names) != count:
        raise ValueError(f"{argument} has {len(names)} names but P has {count} {unit}")
    try:
        unique = set(names)
    except TypeError:
        raise TypeError(f"{argument} must contain hashable names (strings or numbers)") from None
    if len(unique) != count:
        duplicate = next(name for name, times in collections.Counter(names).items() if times > 1)
        raise ValueError(f"{argument} must be unique; {duplicate!r} appears more than once")
    return names
