"""Where the forward loop of training keeps each step's records for the backward loop.

`ListRecords` (graph loops) and `DenseRecords` (compiled loops) share one
interface: `empty(length)`, `save(store, t, records)`, `done(store)` and
`load(store, t) -> (store, records)`.
"""

import tensorflow as tf

# The per-step records of the graph loops live in a TensorList: pushed by the
# forward loop and popped by the backward loop, which runs in reverse, so
# each step's records are freed as soon as the step has been
# back-propagated.
_ANY_SHAPE = -1


class ListRecords:
    """Per-step records in a TensorList (graph loops).

    One step's records are stacked along a new first axis (a plain copy)
    and pushed as one element: every extra list would add loop variables,
    whose bookkeeping costs more per step than the copy.
    """

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count
        self.shape = None  # static shape of one step's stacked records, seen while tracing
        self.widths = None  # the records' widths where they were joined along the last axis

    def empty(self, length):
        return tf.raw_ops.EmptyTensorList(
            element_shape=tf.constant(_ANY_SHAPE), max_num_elements=length, element_dtype=self.dtype
        )

    def save(self, store, t, records):
        if self.count > 1 and len({tuple(r.shape) for r in records}) > 1:
            # Records of different widths (the variant cells' normalisation
            # statistics beside their gate factors) are joined along the last
            # axis instead, and split again by `load`.
            self.widths = [r.shape[-1] for r in records]
            stacked = tf.concat(records, axis=-1)
        else:
            self.widths = None
            stacked = records[0] if self.count == 1 else tf.stack(records, axis=0)
        self.shape = stacked.shape
        return tf.raw_ops.TensorListPushBack(input_handle=store, tensor=stacked)

    def done(self, store):
        return store

    def load(self, store, t):
        store, stacked = tf.raw_ops.TensorListPopBack(
            input_handle=store, element_shape=tf.constant(_ANY_SHAPE), element_dtype=self.dtype
        )
        stacked.set_shape(self.shape)
        if self.widths is not None:
            return store, tf.split(stacked, self.widths, axis=-1)
        return store, [stacked] if self.count == 1 else tf.unstack(stacked, num=self.count, axis=0)


class DenseRecords:
    """Per-step records as dense tensors, one per record (XLA-compiled loops).

    A compiled loop cannot hand a TensorList to the code outside it, so the
    forward loop returns each record of all steps as one `(time, batch, n)`
    tensor, which the backward loop slices.

    One tensor per record rather than all records stacked in one: the
    memory of a large tensor comes from the system at every call (glibc
    maps allocations above 32 MiB afresh each time, see `malloc(3)`,
    M_MMAP_THRESHOLD), and the first touch of every fresh page is a page
    fault. Tensors of one record each are smaller, memory the allocator can
    reuse (see layers/README.md#records-as-one-tensor-each).
    """

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count

    def empty(self, length):
        return tuple(tf.TensorArray(self.dtype, size=length) for _ in range(self.count))

    def save(self, store, t, records):
        return tuple(array.write(t, record) for array, record in zip(store, records))

    def done(self, store):
        return tuple(array.stack() for array in store)

    def load(self, store, t):
        return store, [records[t] for records in store]
