// Preloaded into every js-ipfs daemon (node --require): its HTTP gateway serves only what this
// member's node already holds. js-ipfs's gateway resolves a CID it lacks by asking the swarm, so
// anyone who can reach one member's gateway could read every other member's blobs through it (and
// make it fetch arbitrary content). Here a request for /ipfs/CID is answered 404 at once, before
// js-ipfs sees it, unless the CID's root block is in this node's block store (repo/blocks, flatfs
// with next-to-last/2 sharding, keys the base32 of the multihash). Blobs added to a node store all
// their blocks, so a held root means a held file. /ipns/ and anything else is refused too.
//
// The check must decide before hapi receives the request, synchronously, from a CommonJS preload:
// the CID library of js-ipfs (multiformats) is ESM only, so the two decodings it needs (base32 and
// base58btc, both lookup tables) are written out here.
'use strict'
const fs = require('fs')
const http = require('http')
const path = require('path')

const BLOCKS = process.env.FEDLEDGER_IPFS_BLOCKS

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function base32Decode (text) {
  const out = []
  let bits = 0
  let value = 0
  for (const ch of text.toLowerCase()) {
    const v = B32.indexOf(ch)
    if (v < 0) throw new Error('not base32')
    value = (value << 5) | v
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Buffer.from(out)
}

function base32Encode (bytes) {
  let out = ''
  let bits = 0
  let value = 0
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31]
  return out.toUpperCase()
}

function base58Decode (text) {
  let n = 0n
  for (const ch of text) {
    const v = B58.indexOf(ch)
    if (v < 0) throw new Error('not base58')
    n = n * 58n + BigInt(v)
  }
  const hex = n.toString(16)
  const body = Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex')
  const zeros = text.length - text.replace(/^1+/, '').length
  return Buffer.concat([Buffer.alloc(zeros), body])
}

function varint (bytes, at) {
  let value = 0
  let shift = 0
  for (;;) {
    const b = bytes[at++]
    if (b === undefined || shift > 28) throw new Error('bad varint')
    value |= (b & 0x7f) << shift
    if (!(b & 0x80)) return [value, at]
    shift += 7
  }
}

/** The multihash a CID string names: CIDv0 (Qm..., base58btc) or CIDv1 in base32 (b...). */
function multihashOf (cid) {
  if (cid.length === 46 && cid.startsWith('Qm')) return base58Decode(cid)
  if (cid[0] !== 'b' && cid[0] !== 'B') throw new Error('only base32 CIDv1 and CIDv0 are served')
  const bytes = base32Decode(cid.slice(1))
  let [version, at] = varint(bytes, 0)
  if (version !== 1) throw new Error('unknown CID version')
  ;[, at] = varint(bytes, at) // the codec
  return bytes.subarray(at)
}

/** Null when the request may go on to js-ipfs, else the refusal to send. */
function refusal (url) {
  const match = /^\/ipfs\/([A-Za-z0-9]+)(?:[/?#]|$)/.exec(url)
  if (!match) return [404, 'this gateway serves /ipfs/CID of what its member holds, nothing else\n']
  let file
  try {
    file = blockFile(multihashOf(match[1]))
  } catch (err) {
    return [400, `not a CID this gateway serves: ${err.message}\n`]
  }
  if (!fs.existsSync(file)) {
    return [404, `${match[1]} is not held by this member: this gateway never fetches on behalf of its callers\n`]
  }
  return null
}

// ------------------------------------------------------------------------------ fast reads
//
// js-ipfs's gateway reassembles a file block by block through its UnixFS exporter at about 35 MB/s
// (one 40 MB model: 1.1 s; ten members reading it at once: 7 s). The bytes are already on disk, one
// file per block: a file held whole is streamed here straight from those files, in order, at disk
// and loopback speed (the same file: 0.12 s; ten readers: 1 s). A file is a raw block, or a dag-pb
// UnixFS file node whose children are such files. A file not held whole (a block missing, another
// codec, a directory) is refused like one not held at all; only sub-paths still go on to js-ipfs.
// The reader checks the sha256 of the whole file against the chain either way.

const RAW = 0x55
const DAG_PB = 0x70
// A tree is walked synchronously, before any byte is sent: these bound what a crafted tree that
// reached this node (through the swarm) can make the walk cost, per request. 65,536 blocks are
// 16 GiB of 256 KiB leaves, far beyond any model; a deeper or larger tree is refused.
const MAX_DEPTH = 8
const MAX_BLOCKS = 1 << 16

/** [field number, wire type, value, next offset] of the protobuf field at `at`. */
function pbField (buf, at) {
  const [tag, p] = varint(buf, at)
  const field = tag >>> 3
  const wire = tag & 7
  if (wire === 0) {
    // Sizes may pass 2^31: read the varint as a Number with multiplication, not bit shifts.
    let value = 0
    let scale = 1
    let i = p
    for (;;) {
      const b = buf[i++]
      if (b === undefined || scale > 2 ** 56) throw new Error('bad varint')
      value += (b & 0x7f) * scale
      if (!(b & 0x80)) return [field, wire, value, i]
      scale *= 128
    }
  }
  if (wire === 2) {
    const [len, q] = varint(buf, p)
    if (q + len > buf.length) throw new Error('truncated field')
    return [field, wire, buf.subarray(q, q + len), q + len]
  }
  throw new Error(`unexpected protobuf wire type ${wire}`)
}

/** [codec, multihash] of a binary CID (v0: a bare sha2-256 multihash). */
function cidParts (bytes) {
  if (bytes[0] === 0x12 && bytes[1] === 0x20 && bytes.length === 34) return [DAG_PB, bytes]
  let [version, at] = varint(bytes, 0)
  if (version !== 1) throw new Error('unknown CID version')
  let codec
  ;[codec, at] = varint(bytes, at)
  return [codec, bytes.subarray(at)]
}

function blockFile (multihash) {
  const key = base32Encode(multihash)
  return path.join(BLOCKS, key.slice(-3, -1), key + '.data')
}

/** The pieces of a file held whole, in order ({file, size} of a raw leaf block, or {data} inline
 * in a dag-pb node), or null when any block is missing or not a plain UnixFS file. */
function filePieces (codec, multihash, depth = 0, out = []) {
  if (depth > MAX_DEPTH || out.length > MAX_BLOCKS) return null
  const file = blockFile(multihash)
  if (codec === RAW) {
    let st
    try { st = fs.statSync(file) } catch { return null }
    out.push({ file, size: st.size })
    return out
  }
  if (codec !== DAG_PB) return null
  let node
  try { node = fs.readFileSync(file) } catch { return null }
  const links = []
  let data = null
  for (let at = 0; at < node.length;) {
    const [field, wire, value, next] = pbField(node, at)
    if (field === 2 && wire === 2) {
      for (let p = 0; p < value.length;) {
        const [f, w, v, n] = pbField(value, p)
        if (f === 1 && w === 2) links.push(v)
        p = n
      }
    } else if (field === 1 && wire === 2) {
      data = value
    }
    at = next
  }
  if (data === null) return null
  let type = null
  let inline = null
  for (let at = 0; at < data.length;) {
    const [field, wire, value, next] = pbField(data, at)
    if (field === 1 && wire === 0) type = value
    if (field === 2 && wire === 2) inline = value
    at = next
  }
  if (type !== 2 && type !== 0) return null // UnixFS File or Raw only
  if (inline && inline.length) out.push({ data: Buffer.from(inline), size: inline.length })
  for (const link of links) {
    const [c, mh] = cidParts(link)
    if (filePieces(c, mh, depth + 1, out) === null) return null
  }
  return out
}

/** The pieces of /ipfs/CID; null when it is not held whole; undefined for a sub-path, left to js-ipfs. */
function fastPieces (url) {
  const match = /^\/ipfs\/([A-Za-z0-9]+)(?:\?.*)?$/.exec(url)
  if (!match) return undefined
  try {
    const cid = match[1]
    if (cid.length === 46 && cid.startsWith('Qm')) return filePieces(DAG_PB, base58Decode(cid))
    if (cid[0] !== 'b' && cid[0] !== 'B') return null
    return filePieces(...cidParts(base32Decode(cid.slice(1))))
  } catch {
    return null
  }
}

async function readPiece (piece, buf) {
  const fh = await fs.promises.open(piece.file, 'r')
  try {
    const { bytesRead } = await fh.read(buf, 0, piece.size, 0)
    if (bytesRead !== piece.size) throw new Error('a block changed size while being served')
  } finally {
    await fh.close()
  }
  return buf.subarray(0, piece.size)
}

async function sendPieces (res, pieces) {
  const total = pieces.reduce((n, p) => n + p.size, 0)
  res.writeHead(200, {
    'content-type': 'application/octet-stream',
    'content-length': String(total),
    'x-fedledger-gateway': 'local-only, direct'
  })
  // Two buffers per response, each reused once the socket has taken what it held: the next block
  // is read while the last one is sent. A fresh buffer per block (or a read stream) made V8 collect
  // garbage over the daemon's whole heap every few MB and cost about 20 ms of CPU per MB served.
  const largest = pieces.reduce((n, p) => Math.max(n, p.data ? 0 : p.size), 0)
  const bufs = [Buffer.allocUnsafeSlow(largest), Buffer.allocUnsafeSlow(largest)]
  const sent = [null, null]
  for (let i = 0; i < pieces.length; i++) {
    if (res.destroyed) return
    const piece = pieces[i]
    const slot = i & 1
    if (sent[slot]) await sent[slot]
    let chunk = piece.data
    if (!chunk) {
      chunk = await readPiece(piece, bufs[slot])
    }
    sent[slot] = new Promise((resolve, reject) => res.write(chunk, err => err ? reject(err) : resolve()))
  }
  await Promise.all(sent)
  res.end()
}

if (BLOCKS) {
  const emit = http.Server.prototype.emit
  http.Server.prototype.emit = function (event, req, res, ...rest) {
    // The RPC API lives under /api/v0/; the gateway is every other path.
    if (event === 'request' && req && typeof req.url === 'string' && !req.url.startsWith('/api/')) {
      const refused = refusal(req.url)
      if (refused) {
        res.writeHead(refused[0], { 'content-type': 'text/plain; charset=utf-8', 'x-fedledger-gateway': 'local-only' })
        res.end(refused[1])
        return true
      }
      const pieces = req.method === 'GET' ? fastPieces(req.url) : undefined
      if (pieces) {
        sendPieces(res, pieces).catch(() => res.destroy())
        return true
      }
      if (pieces === null) {
        // The root is here but not every block: js-ipfs would ask the swarm for the rest.
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-fedledger-gateway': 'local-only' })
        res.end('this member does not hold the whole file: this gateway never fetches on behalf of its callers\n')
        return true
      }
    }
    return emit.call(this, event, req, res, ...rest)
  }
}

module.exports = { refusal, multihashOf, base32Encode, filePieces, fastPieces }
