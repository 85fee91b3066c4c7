"""Functions for `python:` steps in the tests."""

import pyarrow as pa
import pyarrow.compute as pc


def upper_email(batch: pa.RecordBatch, suffix: str) -> pa.RecordBatch:
    index = batch.schema.get_field_index("email")
    upper = pc.binary_join_element_wise(pc.utf8_upper(batch.column(index)), suffix, "")
    return batch.set_column(index, "email", upper)


def even_ids(batch: pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches([batch.filter(pc.equal(pc.bit_wise_and(batch.column("id"), 1), 0))])


def explode(batch: pa.RecordBatch) -> pa.RecordBatch:
    return 1 / 0
