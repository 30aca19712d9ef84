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
  let key
  try {
    key = base32Encode(multihashOf(match[1]))
  } catch (err) {
    return [400, `not a CID this gateway serves: ${err.message}\n`]
  }
  const file = path.join(BLOCKS, key.slice(-3, -1), key + '.data')
  if (!fs.existsSync(file)) {
    return [404, `${match[1]} is not held by this member: this gateway never fetches on behalf of its callers\n`]
  }
  return null
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
    }
    return emit.call(this, event, req, res, ...rest)
  }
}

module.exports = { refusal, multihashOf, base32Encode }
