#!/usr/bin/env python3
"""An independent reader of ckpt's teacher-logit cache (Formats/logit-cache.md).

Written from the format document alone, with Python's own zstd/lz4 bindings and a
table CRC-32C, so that it can check ckpt's writer and reader.

    read_logit_cache.py CACHE [--jsonl OUT] [--streams]

Prints a summary; --jsonl writes every record as `ckpt logits dump --jsonl` does;
--streams prints the compressed size of each payload stream per token (for tuning).
"""
import argparse
import json
import struct
import sys

import lz4.block
import zstandard

_TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    _TABLE.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = _TABLE
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


class CacheError(Exception):
    pass


def leb(buf, at):
    v = shift = 0
    while True:
        x = buf[at]
        at += 1
        v |= (x & 0x7F) << shift
        if x < 0x80:
            return v, at
        shift += 7


def read(path):
    data = open(path, "rb").read()
    if data[:7] != b"CKPTLGC" or data[7] != 1:
        raise CacheError("not a version-1 ckpt logit cache")
    hlen, hcrc = struct.unpack_from("<II", data, 8)
    hjson = data[16:16 + hlen]
    if crc32c(hjson) != hcrc:
        raise CacheError("header checksum mismatch")
    header = json.loads(hjson)
    if data[-8:] != b"CKPTLEND":
        raise CacheError("no trailer: unfinished build")
    (index_at,) = struct.unpack_from("<Q", data, len(data) - 16)
    if data[index_at:index_at + 4] != b"CIDX":
        raise CacheError("no index magic")
    icrc, count = struct.unpack_from("<IQ", data, index_at + 4)
    if crc32c(data[index_at + 8:len(data) - 16]) != icrc:
        raise CacheError("index checksum mismatch")
    entries = [struct.unpack_from("<QQIIQ", data, index_at + 16 + 32 * i) for i in range(count)]
    return data, header, entries


def chunk_streams(data, header, entry):
    offset = entry[0]
    if data[offset:offset + 4] != b"CHNK":
        raise CacheError(f"chunk at {offset}: no magic")
    crc, first, nseq, nrec, raw_size, packed_size, reserved = struct.unpack_from("<IQIIQQQ", data, offset + 4)
    body = data[offset + 8:offset + 48 + packed_size]
    if crc32c(body) != crc:
        raise CacheError(f"chunk at {offset}: checksum mismatch")
    packed = data[offset + 48:offset + 48 + packed_size]
    if header["codec"] == "zstd":
        raw = zstandard.ZstdDecompressor().decompress(packed, max_output_size=raw_size)
    else:
        raw = lz4.block.decompress(packed, uncompressed_size=raw_size)
    if len(raw) != raw_size:
        raise CacheError(f"chunk at {offset}: decompressed {len(raw)} bytes, expected {raw_size}")
    lengths = struct.unpack_from("<7I", raw, 0)
    streams, at = [], 28
    for n in lengths:
        streams.append(raw[at:at + n])
        at += n
    return (first, nseq, nrec), streams


def records(data, header, entry):
    (first, nseq, nrec), s = chunk_streams(data, header, entry)
    enc = header["encoding"]
    seq_lengths = struct.unpack(f"<{nseq}I", s[0])
    tokens = struct.unpack(f"<{nrec}I", s[1])
    table = struct.unpack(f"<{len(s[2]) // 4}I", s[2])
    p4 = p5 = 0
    r = 0
    for si, n in enumerate(seq_lengths):
        for pos in range(n):
            if enc["kind"] == "topk":
                m = enc["k"]
            else:
                (m,) = struct.unpack_from("<H", s[3], 2 * r)
            code = -1
            ids, vals = [], []
            for _ in range(m):
                gap, p4 = leb(s[4], p4)
                code += gap + 1
                ids.append(table[code])
                if enc["kind"] == "topk":
                    vals.append(-s[5][p5] * enc["logprob_step"])
                    p5 += 1
                else:
                    c, p5 = leb(s[5], p5)
                    vals.append(c)
            rec = {"seq": first + si, "pos": pos, "token": tokens[r]}
            if enc["kind"] == "topk":
                (q,) = struct.unpack_from("<H", s[6], 2 * r)
                order = sorted(range(m), key=lambda j: (-vals[j], ids[j]))
                rec["ids"] = [ids[j] for j in order]
                rec["logprobs"] = [vals[j] for j in order]
                rec["tail_logprob"] = None if q == 0xFFFF else -q * enc["tail_step"]
            else:
                order = sorted(range(m), key=lambda j: (-vals[j], ids[j]))
                rec["ids"] = [ids[j] for j in order]
                rec["counts"] = [vals[j] for j in order]
            yield rec
            r += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache")
    ap.add_argument("--jsonl")
    ap.add_argument("--streams", action="store_true")
    a = ap.parse_args()
    data, header, entries = read(a.cache)
    tokens = sum(e[3] for e in entries)
    print(f"{a.cache}: {header['encoding']['kind']}, {len(entries)} chunks, {tokens} tokens, {len(data) / max(tokens, 1):.2f} bytes/token")
    if a.streams:
        names = ["seq lengths", "tokens", "id table", "entry counts", "codes", "values", "tail"]
        sizes = [0] * 7
        cctx = zstandard.ZstdCompressor(level=header["level"] if header["codec"] == "zstd" else 3)
        for e in entries:
            _, s = chunk_streams(data, header, e)
            for i, st in enumerate(s):
                sizes[i] += len(cctx.compress(st)) if st else 0
        for n, z in zip(names, sizes):
            print(f"  {n:13s} {z / tokens:6.2f} bytes/token (zstd alone)")
    if a.jsonl:
        with open(a.jsonl, "w") as out:
            for e in entries:
                for rec in records(data, header, e):
                    out.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    try:
        main()
    except CacheError as e:
        sys.exit(f"error: {e}")
