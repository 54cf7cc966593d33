/**
 * agent.v1.RegistryService: agents register and stream reports; each report is answered by a
 * ReportAck on the same stream. Over mutual TLS a node registers and reports only as itself
 * (agent-plane-policy.ts). Reports are applied one at a time, in order.
 *
 * StreamReports is served as a raw call (see WithRawStreamCalls), so the generated decorator, which
 * would bind it as an Observable stream, is replaced by @GrpcMethod/@GrpcStreamCall with the service
 * name only: each binds the rpc named as its method, and the interface checks those names.
 */
import { Controller, Inject } from '@nestjs/common';
import { GrpcMethod, GrpcStreamCall } from '@nestjs/microservices';
import type { Metadata, ServerDuplexStream } from '@grpc/grpc-js';
import { AGENT_ERROR_DOMAIN, toServerError, type agent } from '@vmm/proto';
import { REGISTRY_SERVICE_NAME, type RegistryServiceController, type WithRawStreamCalls } from '@vmm/proto/nest';
import { LOGGER, type Logger } from '../common/logger.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { assertActsAsItself } from './agent-plane-policy.js';
import { RegistryService } from '../registry/registry.service.js';
import { toRichError } from './grpc-exception.filter.js';

@Controller()
export class RegistryGrpcController implements WithRawStreamCalls<RegistryServiceController, 'streamReports'> {
  constructor(
    @Inject(RegistryService) private readonly registry: RegistryService,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(CONFIG) private readonly config: ControllerConfig,
  ) {}

  @GrpcMethod(REGISTRY_SERVICE_NAME)
  async register(req: agent.RegisterRequest, metadata?: Metadata): Promise<agent.RegisterResponse> {
    assertActsAsItself(this.config.agentPlane, metadata, req.nodeId);
    return this.registry.register(req);
  }

  /**
   * Bidi stream: a report in, its ack out. The raw call (not an rxjs Subject) lets us pause the stream
   * while a report is being applied, so a fast agent cannot pile reports up in memory. An unknown
   * node ends the call with NOT_FOUND: the agent must register again.
   */
  @GrpcStreamCall(REGISTRY_SERVICE_NAME)
  streamReports(call: ServerDuplexStream<agent.StreamReportsRequest, agent.ReportAck>): void {
    let settled = false;
    const finish = (error: unknown) => {
      if (settled) return;
      settled = true;
      if (error) {
        call.emit('error', toServerError(toRichError(error, AGENT_ERROR_DOMAIN, this.logger)));
      } else {
        call.end();
      }
    };
    call.on('data', (msg: agent.StreamReportsRequest) => {
      call.pause();
      Promise.resolve()
        .then(() => {
          assertActsAsItself(this.config.agentPlane, call.metadata, msg.report?.nodeId ?? '');
          return this.registry.report(msg.report);
        })
        .then(
          (ack) => {
            if (settled) return;
            call.write(ack);
            call.resume();
          },
          (error: unknown) => finish(error),
        );
    });
    call.on('end', () => finish(null));
    call.on('error', () => finish(null));
    call.on('cancelled', () => finish(null));
  }
}
