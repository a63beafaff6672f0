#!/usr/bin/env python3
"""Prints how many whole tile records a checkpoint directory holds (used by the batch-script
tests). The logs are `tiles-*.log`: records of a 64-byte header (magic NTKTILE3, the value
count at word 4), the values, and zeros up to a multiple of 4 KiB; see Checkpoint.swift."""
import os
import sys


def count(directory):
    total = 0
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if not (name.startswith("tiles-") and name.endswith(".log")):
            continue
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        offset = 0
        while offset + 64 <= len(data) and data[offset:offset + 8] == b"NTKTILE3":
            values = int.from_bytes(data[offset + 32:offset + 40], "little")
            if offset + 64 + 8 * values > len(data):
                break
            total += 1
            offset += (64 + 8 * values + 4095) // 4096 * 4096
    return total


if __name__ == "__main__":
    print(count(sys.argv[1]))
