// Command overlayd is a userspace overlay router: VXLAN over UDP between
// TUN, TAP and embedded-netstack attachments, without root where it can.
package main
