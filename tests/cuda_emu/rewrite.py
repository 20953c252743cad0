# Rewrites `kernel<targs><<<cfg>>>(args)` into `::emu::make_launch(kernel<targs>, cfg)(args)`.
import sys
s = open(sys.argv[1]).read()
out = []
i = 0
while True:
    j = s.find('<<<', i)
    if j < 0:
        out.append(s[i:]); break
    # walk back over the kernel expression: identifier with optional <...>
    k = j
    if s[k-1] == '>':
        depth = 0; k -= 1
        while True:
            c = s[k]
            if c == '>': depth += 1
            elif c == '<': depth -= 1
            if depth == 0: break
            k -= 1
    while k > 0 and (s[k-1].isalnum() or s[k-1] in '_:'): k -= 1
    name = s[k:j]
    e = s.find('>>>', j)
    cfg = s[j+3:e]
    out.append(s[i:k]); out.append(f'::emu::make_launch({name}, {cfg})')
    i = e + 3
res = ''.join(out)
a = res.find('__device__ __forceinline__ void cp_async16')
if a >= 0:
    b = res.find('// Copies the k tile')
    res = res[:a] + '#include "emu_ptx.h"\n\n' + res[b:]
    res = res.replace('extern __shared__ __align__(128) unsigned char smem[];', 'unsigned char* smem = ::emu::dyn_smem;')
    # host-side runtime calls the emulation has no runtime for
    res = res.replace('cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes)', 'cudaSuccess')
    res = res.replace('cudaGetDevice(&dev);', '')
open(sys.argv[2], 'w').write(res)
