"""The one series → chunks → block pipeline behind compaction, rewrite, repair and downsampling.

``read.read_series`` yields ``ChunkedSeries`` — many series at a time, label sets as symbol-rank keys, chunks
as a column table pointing at their records where they lie (the mmapped segment, or one read buffer);
modifiers turn such batches into new ones (``merge`` overlapping inputs and tombstones, ``relabel``,
``downsample``, ``repair``); ``write.write_series`` hands them to a ``BlockWriter``. A chunk nothing changed is
written as its whole record, CRC included; only chunks a modifier touches are decoded and re-encoded, in batch.
"""
