// throttle-proxy.js s3|dynamodb LISTEN_PORT SERVER_PORT [FLAG_FILE] — an
// HTTP proxy on 127.0.0.1 that answers every third request with the
// service's throttling error (S3: 503 SlowDown; DynamoDB: 400
// ThrottlingException) — every request while FLAG_FILE exists — and
// forwards the others unchanged (the Host header too, so signatures still
// match).
// Counts are printed on SIGTERM. Test helper for tests/servers/with-cloud.sh.
'use strict';
const http = require('http');
const fs = require('fs');
const [kind, listenPort, serverPort, flagFile] = process.argv.slice(2);
let n = 0, throttled = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (++n % 3 === 0 || (flagFile && fs.existsSync(flagFile))) {
      throttled++;
      if (kind === 's3') {
        res.writeHead(503, { 'Content-Type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown' +
                '</Code><Message>Please reduce your request rate.</Message></Error>');
      } else {
        res.writeHead(400, { 'Content-Type': 'application/x-amz-json-1.0' });
        res.end(JSON.stringify({
          __type: 'com.amazonaws.dynamodb.v20120810#ThrottlingException',
          message: 'Rate of requests exceeds the allowed throughput.' }));
      }
      return;
    }
    const up = http.request({ host: '127.0.0.1', port: serverPort, method: req.method,
      path: req.url, headers: req.headers, agent }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end(); });
    up.end(Buffer.concat(chunks));
  });
}).listen(Number(listenPort), '127.0.0.1');
process.on('SIGTERM', () => {
  console.log(`requests ${n} throttled ${throttled}`);
  process.exit(0);
});
