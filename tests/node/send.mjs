// A Node.js "agent service": one run per exporter (OTLP/gRPC and OTLP/HTTP protobuf), each an
// invoke_agent span with two chat calls, as the OpenTelemetry JS SDK sends them. Prints the trace
// ids as JSON; exits non-zero if an exporter fails to flush.
import { trace, context } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as HttpExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { Metadata } from '@grpc/grpc-js';

const { GRPC_URL, HTTP_URL, TOKEN } = process.env;
const headers = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
const metadata = new Metadata();
if (TOKEN) metadata.set('authorization', `Bearer ${TOKEN}`);

function provider(exporter, service) {
  return new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
}

function oneRun(tp, name) {
  const tracer = tp.getTracer('node-agent', '1.0.0');
  const root = tracer.startSpan(`invoke_agent ${name}`, { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': name } });
  const ctx = trace.setSpan(context.active(), root);
  for (const [inp, out] of [[1000, 100], [2000, 50]]) {
    const span = tracer.startSpan('chat gpt-4o-mini', {
      kind: 2, // CLIENT
      attributes: {
        'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4o-mini',
        'gen_ai.usage.input_tokens': inp, 'gen_ai.usage.output_tokens': out,
      },
    }, ctx);
    span.end();
  }
  root.end();
  return root.spanContext().traceId;
}

const grpcTp = provider(new GrpcExporter({ url: GRPC_URL, metadata }), 'node-agent-grpc');
const httpTp = provider(new HttpExporter({ url: HTTP_URL, headers }), 'node-agent-http');
const ids = { grpc: oneRun(grpcTp, 'node-grpc'), http: oneRun(httpTp, 'node-http') };
try {
  await grpcTp.forceFlush();
  await httpTp.forceFlush();
  await grpcTp.shutdown();
  await httpTp.shutdown();
} catch (err) {
  console.error(`export failed: ${err}`);
  process.exit(2);
}
console.log(JSON.stringify(ids));
