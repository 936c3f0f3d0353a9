/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: CRC-32C (Castagnoli), the checksum of the disk log's header
 * (docs/targets/mirror.md, "Dirty log").  The same CRC as iSCSI's and
 * ext4's metadata checksums: reflected polynomial 0x82f63b78, initial
 * value and final xor 0xffffffff.  zlib's crc32 uses another polynomial.
 *
 * Thread model: any thread; no state.
 */
#ifndef NBD_DM_CRC32C_H
#define NBD_DM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC-32C of len bytes at buf ("123456789" gives 0xe3069283). */
uint32_t ndm_crc32c (const void *buf, size_t len);

#endif /* NBD_DM_CRC32C_H */
