/* Test harness only, never shipped (not in the MSI): Wine 8 (Debian 12) lacks ProcessPrng in
 * bcryptprimitives.dll, which Rust's standard library imports for random numbers. Placed next
 * to the .exe under Wine, this DLL supplies it from RtlGenRandom (SystemFunction036). */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
